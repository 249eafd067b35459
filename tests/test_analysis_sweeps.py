"""Reports, figures and the tidy table on real sweeps run through ``parsgd sweep``.

- softmax on digits over H = 1 ... one-shot: test accuracy >= 90%, a report sorted by H
  (numbers ascending, one-shot last; as text every16 would precede every4) with test metrics
  and subopt; time to an accuracy target counts up, never the time of step 0;
- a grid mixing a constant step size and a dict one: default plot, legends, rows, run ids;
- 12 curves: no two share colour and line style; the legend is outside the axes;
- ``parsgd export`` (CSV and parquet) and ``parsgd.load`` give the same table, which is the
  traces on disk.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas
import pytest
import yaml
from conftest import ROOT, cli_in_process, run_cli

import parsgd
from parsgd.analysis.curves import compute_curves, compute_target_times
from parsgd.analysis.plot import draw_curves
from parsgd.analysis.runs import find_runs, varying_keys
from parsgd.analysis.targets import parse_target, time_to_target
from parsgd.engine.rundir import read_trace

EVERY = [1, 4, 16, 64, 256, "end"]


def _sweep(root: Path, name: str, config: dict, grid: dict, trials: int = 2) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump({"name": name, "config": config, "grid": grid, "trials": trials})
    )
    done = run_cli("sweep", str(path), "--out", str(root / "out"), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    return root / "out" / name


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = yaml.safe_load((ROOT / "configs" / "paper" / "6-softmax-digits.yaml").read_text())
    config = {**base["config"], "workers": 2}
    config["sgd"] = {**config["sgd"], "steps": 600}
    config["eval"] = {"every": 50}
    return _sweep(tmp_path_factory.mktemp("digits"), "digits", config, {"averaging.every": EVERY})


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_digits_softmax_report_is_sorted_by_h_with_test_metrics(digits: Path) -> None:
    done = run_cli("report", str(digits))
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[1].split()
    for column in ("test_loss", "test_accuracy", "subopt", "dist_opt_sq"):
        assert column in header
    rows = _csv(digits / "report.csv")
    assert [r["run"].split("-")[0] for r in rows] == [f"every{h}" for h in EVERY]
    for row in rows:
        assert float(row["test_accuracy"]) >= 0.90, row
        assert 0 < float(row["subopt"]) < 0.1
    # Pooled by --by, the same order and labels that read as words.
    done = run_cli("report", str(digits), "--by", "averaging.every", "--columns", "test_accuracy")
    assert done.returncode == 0, done.stderr
    body = done.stdout.splitlines()[2:8]
    assert body[0].startswith("mini-batch") and body[-1].startswith("one-shot")
    assert done.stdout.splitlines()[1].split() == ["run", "test_accuracy", "best"]


def test_time_to_an_accuracy_target_is_not_the_time_of_step_0(digits: Path) -> None:
    runs = find_runs([digits])
    target = parse_target("test_accuracy>=0.9")
    inferred = parse_target(0.9, "test_accuracy")
    assert inferred == target  # higher is better for accuracy: >= without saying so
    for run in runs:
        for trial in run.trials:
            seconds = time_to_target(trial, target)
            assert seconds is not None and seconds > trial["wall_s"][0]
            first = np.flatnonzero(trial["test_accuracy"] >= 0.9)[0]
            assert first > 0 and seconds == trial["wall_s"][first]
            # Power: the old rule (<=) answers step 0, where accuracy is about 0.1.
            assert time_to_target(trial, parse_target("test_accuracy<=0.9")) == trial["wall_s"][0]
    never = compute_target_times(
        runs, by=["averaging.every"], target=parse_target("test_accuracy>=1.01")
    )
    assert all(t.reached == [] for t in never)
    done = run_cli("report", str(digits), "--target", "test_accuracy>=1.01")
    assert done.returncode == 0, done.stderr
    assert "t(test_accuracy>=1.01)_s" in done.stdout and "never" in done.stdout
    rows = _csv(digits / "report.csv")
    assert [r["reached"] for r in rows] == ["0/2"] * 6
    figure = digits / "ttt.png"
    done = run_cli(
        "plot", str(digits), "-o", str(figure), "--kind", "time-to-target", "--target",
        "test_accuracy>=0.9", "--log-time",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "test_accuracy=>0.9"], "--target must be METRIC>=VALUE"),
        (["--target", "accuracy>=0.9"], "unknown column 'accuracy'"),
        (["--columns", "loss,acc"], "--columns: unknown column 'acc'"),
    ],
)
def test_bad_target_or_columns_is_one_line_exit_2(
    digits: Path, args: list[str], message: str
) -> None:
    before = (digits / "report.csv").read_bytes()
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    cli = run_cli if args == ["--target", "test_accuracy=>0.9"] else cli_in_process
    done = cli("report", str(digits), *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (digits / "report.csv").read_bytes() == before


def test_export_and_load_give_the_same_table_which_is_the_traces(digits: Path) -> None:
    frame = parsgd.load(digits)
    out = digits.parent / "tables"
    for name in ("runs.csv", "runs.parquet"):
        done = run_cli("export", str(digits), "-o", str(out / name))
        assert done.returncode == 0, done.stderr
    from_csv = pandas.read_csv(out / "runs.csv")
    from_parquet = pandas.read_parquet(out / "runs.parquet")
    pandas.testing.assert_frame_equal(from_parquet, frame)
    # CSV has no types: the swept column (1, 4, ..., end) comes back as text.
    frame_text = frame.astype({"averaging.every": str})
    pandas.testing.assert_frame_equal(
        from_csv.astype({"averaging.every": str}), frame_text, check_dtype=False
    )
    assert list(frame.columns[:3]) == ["run", "status", "averaging.every"]
    assert frame["averaging.every"].tolist().count("end") == len(frame) // 6
    # Against the traces on disk, every run, every row, every number.
    for run_dir in sorted(p.parent for p in digits.glob("*/trace.csv")):
        trace = read_trace(run_dir / "trace.csv")
        mine = frame[frame["run"] == run_dir.name]
        assert len(mine) == len(trace)
        for column in ("trial", "step", "loss", "subopt", "test_accuracy"):
            expected = [float(row[column]) for row in trace]
            assert mine[column].astype(float).tolist() == expected
    finals = parsgd.load(digits, finals=True)
    assert len(finals) == 6 * 2 and set(finals["step"]) == {600}
    done = run_cli("export", str(digits), "-o", str(out / "finals.csv"), "--finals")
    assert done.returncode == 0, done.stderr
    assert len(_csv(out / "finals.csv")) == 12
    done = run_cli("export", str(digits), "-o", str(out / "runs.xlsx"))
    assert done.returncode == 2 and ".csv or .parquet" in done.stderr


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = {
        "seed": 1, "workers": 2, "backend": "serial",
        "data": {"kind": "gaussian_linear", "n": 500, "d": 5, "noise": 0.3},
        "sgd": {"steps": 100}, "eval": {"every": 20},
    }  # fmt: skip
    steps = [0.01, 0.02, {"kind": "inverse", "eta0": 0.05, "t0": 1000}]
    grid = {"sgd.step_size": steps, "averaging.every": [1, 10, 100, "end"]}
    return _sweep(tmp_path_factory.mktemp("mixed"), "mixed", config, grid, trials=1)


def test_a_grid_mixing_scalars_and_dicts_plots_reports_and_names_runs(mixed: Path) -> None:
    runs = find_runs([mixed])
    assert varying_keys(runs) == ["averaging.every", "sgd.step_size"]
    names = sorted(p.parent.name for p in mixed.glob("*/trace.csv"))
    assert any(n.startswith("every1_step_sizeinverse_eta0_0.05_t0_1000-") for n in names), names
    done = run_cli("plot", str(mixed), "-o", str(mixed / "f.png"))
    assert done.returncode == 0, done.stderr
    done = run_cli("report", str(mixed), "--by", "sgd.step_size")
    assert done.returncode == 0, done.stderr
    assert "sgd.step_size = inverse(eta0=0.05, t0=1000)" in done.stdout
    assert "factor" not in done.stdout  # defaults the kind does not use stay out
    rows = [line.split("  ")[0] for line in done.stdout.splitlines()[2:5]]
    assert rows == ["sgd.step_size = 0.01", "sgd.step_size = 0.02",
                    "sgd.step_size = inverse(eta0=0.05, t0=1000)"]  # fmt: skip
    assert set(parsgd.load(mixed)["sgd.step_size"]) == {
        "0.01",
        "0.02",
        "inverse(eta0=0.05, t0=1000)",
    }


def test_twelve_curves_differ_in_colour_or_line_style_and_the_legend_is_outside(
    mixed: Path,
) -> None:
    runs = find_runs([mixed])
    curves, _ = compute_curves(runs, x="step", y="loss", by=varying_keys(runs))
    assert len(curves) == 12
    fig, ax = plt.subplots()
    draw_curves(ax, curves, x="step", y="loss", band="stderr")
    lines = [
        line for line in ax.get_lines() if line.get_label() and not line.get_label().startswith("_")
    ]
    styles = [(line.get_color(), line.get_linestyle(), line.get_marker()) for line in lines]
    assert len(lines) == 12 and len(set(styles)) == 12, styles
    assert styles[0][0] == styles[10][0]  # colours repeat past ten ...
    assert styles[0][1:] != styles[10][1:]  # ... so the line style must not
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    axes = ax.get_window_extent()
    assert legend.x0 >= axes.x1  # right of the axes: it covers no curve and no label
    plt.close(fig)
    output = mixed / "twelve.png"
    done = run_cli(
        "plot", str(mixed), "-o", str(output), "--facet", "sgd.step_size", "--ylim", "0,"
    )
    assert done.returncode == 0, done.stderr
    assert output.stat().st_size > 10_000


def test_default_title_is_short_for_many_directories(mixed: Path) -> None:
    from parsgd.analysis.figure_style import short_title

    paths = sorted(p.parent for p in mixed.glob("*/trace.csv"))
    title = short_title(paths, "loss against step", ["sgd.step_size"])
    assert title == "mixed: loss against step by sgd.step_size"
    output = mixed / "many.png"
    done = run_cli("plot", *map(str, paths), "-o", str(output))
    assert done.returncode == 0, done.stderr
    width, height = plt.imread(output).shape[1::-1]
    assert width < 2500 and height < 1500, (width, height)


def test_model_size_of_a_softmax_run_is_classes_times_features(digits: Path) -> None:
    from parsgd.analysis.network import model_size

    run = find_runs([digits])[0]
    assert model_size(run) == 10 * 64  # built from the run's data: 10 classes x 64 pixels
