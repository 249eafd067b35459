"""The experiment-9 figure: ``parsgd plot --kind final`` on a sweep over data.partition and
averaging.every, through the command line, and its numbers against the traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from conftest import run_cli

from parsgd.analysis.finals import compute_finals
from parsgd.analysis.runs import find_runs


def _sweep(tmp_path: Path) -> Path:
    sweep = {
        "name": "het",
        "config": {
            "seed": 1,
            "workers": 2,
            "backend": "serial",
            "data": {"kind": "logistic_planted", "n": 400, "d": 6},
            "objective": {"kind": "softmax", "l2": 0.01},
            "sgd": {"steps": 60, "step_size": 0.1},
            "eval": {"every": 20},
        },
        "trials": 3,
        "grid": {
            "data.partition": [{"kind": "shared"}, {"kind": "dirichlet", "alpha": 0.2}],
            "averaging.every": [1, 10, "end"],
        },
    }
    path = tmp_path / "het.yaml"
    path.write_text(yaml.safe_dump(sweep))
    result = run_cli("sweep", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    return tmp_path / "out" / "het"


def _swept(run: Path) -> tuple[str, object]:
    config = yaml.safe_load((run / "config.yaml").read_text())
    return config["data"]["partition"]["kind"], config["averaging"]["every"]


def test_finals_plot_of_a_partition_sweep(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    figure = tmp_path / "finals.png"
    result = run_cli(
        "plot", str(sweep), "-o", str(figure), "--kind", "final", "--y", "subopt",
        "--by", "data.partition", "--log",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"

    lines, _ = compute_finals(
        find_runs([sweep]), x_key="averaging.every", y="subopt", by=["data.partition"]
    )
    # One-shot sits at H = sgd.steps (60) on the H axis.
    assert all(line.positions.tolist() == [1.0, 10.0, 60.0] for line in lines)
    assert [line.label for line in lines] == [
        "data.partition = dirichlet(alpha=0.2)",
        "data.partition = shared",
    ]
    # Each point is the mean over the 3 trials of the last trace row, read independently.
    for line in lines:
        kind = "dirichlet" if "dirichlet" in line.label else "shared"
        xs = [1, 10, "end"]
        for value, mean, trials in zip(xs, line.mean, line.trials, strict=True):
            [run] = [
                d for d in sweep.iterdir()
                if (d / "config.yaml").exists() and _swept(d) == (kind, value)
            ]  # fmt: skip
            rows = [r.split(",") for r in (run / "trace.csv").read_text().splitlines()]
            header, body = rows[0], rows[1:]
            last = {}
            for row in body:
                last[row[0]] = float(row[header.index("subopt")])
            assert trials == 3 and mean == np.mean(list(last.values()))


def test_finals_with_an_unknown_x_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    figure = tmp_path / "f.png"
    result = run_cli("plot", str(sweep), "-o", str(figure), "--kind", "final", "--x", "sgd.nope")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "sgd.nope" in result.stderr
    assert not figure.exists()
