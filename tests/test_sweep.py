"""``parsgd sweep`` on this machine: expansion, bad files, resumption, interruption, sharing."""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import (
    ROOT,
    _listed_processes,
    cli_in_process,
    cli_output,
    run_cli,
    signal_in_steps,
    start_cli,
    trace_rows,
    wait_until,
    write_config,
)

from parsgd.engine.rundir import read_trace
from parsgd.sweep.state import read_index

# Trace columns that are numbers of the algorithm, not timings: equal bit for bit across
# interruption and resumption.
NUMBERS = ("trial", "step", "samples", "syncs", "loss", "loss_workers_mean", "variance",
           "gap", "dist_opt_sq", "subopt")  # fmt: skip
GRID = {"averaging.every": [1, 10, 100, "end"], "sgd.step_size": [0.01, 0.02, 0.05]}


def write_sweep(tmp_path: Path, grid: Any = None, steps: int = 400, **extra: Any) -> Path:
    base = write_config(
        tmp_path / "base.yaml", workers=1, sgd={"steps": steps}, eval={"every": steps // 8}
    )
    sweep = {"name": "avg", "base": base.name, "grid": GRID if grid is None else grid, **extra}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def files_of(sweep_dir: Path, run_id: str) -> dict[str, tuple[str, int]]:
    """Each result file of a run: its content hash and modification time."""
    out = {}
    for path in sorted((sweep_dir / run_id).iterdir()):
        if not path.name.startswith("."):
            out[path.name] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                path.stat().st_mtime_ns,
            )
    return out


def numbers(trace: Path) -> list[tuple[str, ...]]:
    return [tuple(row[c] for c in NUMBERS) for row in read_trace(trace)]


def figures(index: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_index(index)]


def test_list_prints_every_point_and_writes_nothing(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, seeds=[0, 1])
    done = run_cli("sweep", str(sweep), "--list", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 4 * 3 * 2
    assert "averaging.every=end, sgd.step_size=0.05, seed=1" in lines[-1]
    assert len({line.split()[0] for line in lines}) == 24  # distinct run ids
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("grid", "extra", "message"),
    [
        ({"averaging.evry": [1, 10]}, {}, "unknown key averaging.evry; did you mean averaging.ev"),
        ({"averaging.every": [1, 0, 10]}, {}, "sweep point 2 of 3 (averaging.every=0): "
                                              "averaging.every must be an integer >= 1"),
        ({}, {}, "the sweep is empty"),
        ({"averaging.every": []}, {}, "grid.averaging.every must be a non-empty list"),
        ({"sgd.step_size": [0.1]}, {"zip": {"data.noise": [0.1, 0.2], "data.d": [4]}},
         "zip lists must have equal lengths"),
        ({"sgd.step_size": [0.1]}, {"grdi": {}}, "unknown sweep key grdi; did you mean grid?"),
    ],
)  # fmt: skip
def test_bad_sweep_fails_before_anything_runs(
    tmp_path: Path, grid: Any, extra: dict[str, Any], message: str
) -> None:
    sweep = write_sweep(tmp_path, grid=grid, **extra)
    out = tmp_path / "out"
    # The first case through subprocesses (the command line's exit and stderr), the rest
    # through the CLI's main in this process: the same checks, without the start-up.
    cli = run_cli if "averaging.evry" in grid else cli_in_process
    for args in ([], ["--slurm", "--dry-run"]):
        done = cli("sweep", str(sweep), "--out", str(out), *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_bad_point_names_point_and_key_among_many(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, grid={"sgd.step_size": [0.1, -1.0], "data.noise": [0.1, -2]})
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "sweep point 2 of 4 (sgd.step_size=0.1, data.noise=-2): data.noise must be" in (
        done.stderr
    )
    assert "(and 2 more bad points)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_sweep_runs_then_reruns_nothing(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path)
    out = tmp_path / "out"
    first = run_cli("sweep", str(sweep), "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "12 completed; ran 12, skipped 0" in first.stdout
    assert "sweep overhead" in first.stdout
    sweep_dir = out / "avg"
    rows = read_index(sweep_dir / "index.csv")
    assert len(rows) == 12
    assert {r["status"] for r in rows} == {"completed"}
    assert [(r["averaging.every"], r["sgd.step_size"]) for r in rows[:4]] == [
        ("1", "0.01"), ("1", "0.02"), ("1", "0.05"), ("10", "0.01")
    ]  # fmt: skip
    for row in rows:
        assert float(row["final_loss"]) > 0 and float(row["final_dist_opt_sq"]) >= 0
        assert (sweep_dir / row["directory"] / "trace.csv").exists()
    before = {r["run_id"]: files_of(sweep_dir, r["run_id"]) for r in rows}

    again = run_cli("sweep", str(sweep), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "ran 0, skipped 12 already done" in again.stdout
    assert {r["run_id"]: files_of(sweep_dir, r["run_id"]) for r in rows} == before

    status = run_cli("sweep", str(sweep), "--out", str(out), "--status")
    assert status.returncode == 0
    assert "12/12 done (12 completed)" in status.stdout

    figures_before = figures(sweep_dir / "index.csv")
    forced = run_cli("sweep", str(sweep), "--out", str(out), "--force", "--jobs", "1")
    assert forced.returncode == 0, forced.stderr
    assert "ran 12, skipped 0" in forced.stdout
    assert figures(sweep_dir / "index.csv") == figures_before


# Fast points first, so that the slow ones (averaging every step: a meeting per step) are
# under way when the sweep is killed.
KILLED_GRID = {"averaging.every": ["end", 100, 10, 1], "sgd.step_size": [0.01, 0.02, 0.05]}
KILLED_STEPS = 300_000


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The killed sweep run once without interruption: the sweep directory both kills of
    ``test_killed_sweep_finishes_only_what_was_missing`` are compared with (read only)."""
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    sweep = write_sweep(tmp_path, grid=KILLED_GRID, steps=KILLED_STEPS)
    reference = run_cli("sweep", str(sweep), "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    assert "12 completed; ran 12, skipped 0" in reference.stdout
    # Set up outside any one test's leak check (no_leaks), so checked here.
    assert wait_until(lambda: not _listed_processes([tmp_path]), 5.0)
    return tmp_path / "ref" / "avg"


@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_killed_sweep_finishes_only_what_was_missing(
    tmp_path: Path, kill: signal.Signals, uninterrupted: Path
) -> None:
    """Kill a sweep midway; the rerun resumes the rest and matches an uninterrupted sweep."""
    sweep = write_sweep(tmp_path, grid=KILLED_GRID, steps=KILLED_STEPS)
    out = tmp_path / "out"
    sweep_dir = out / "avg"
    proc = subprocess.Popen(
        [sys.executable, "-m", "parsgd", "sweep", str(sweep), "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def midway() -> bool:
        """Three runs completed and a slow one under way (it has written trace rows)."""
        statuses = [_status(p) for p in sweep_dir.glob("*/run.json")]
        under_way = [
            p for p in sweep_dir.glob("every1_*/trace.csv")
            if _status(p.parent / "run.json") == "running" and len(p.read_text().split()) > 2
        ]  # fmt: skip
        return statuses.count("completed") >= 3 and bool(under_way)

    assert wait_until(midway, timeout=120, interval=0.01)
    proc.send_signal(kill)
    stdout, stderr = proc.communicate(timeout=60)
    if kill == signal.SIGTERM:
        assert proc.returncode == 130, stderr
        assert "stopped by SIGTERM" in stdout
    # SIGKILL: the run processes get SIGUSR1 from the kernel (PR_SET_PDEATHSIG) and stop.
    assert wait_until(lambda: _no_holders(sweep_dir), 30)
    rows = read_index(sweep_dir / "index.csv") if kill == signal.SIGTERM else None
    done_ids = [p.parent.name for p in sweep_dir.glob("*/run.json") if _status(p) == "completed"]
    missing = 12 - len(done_ids)
    assert 3 <= len(done_ids) < 12, rows
    kept = {run_id: files_of(sweep_dir, run_id) for run_id in done_ids}

    rerun = run_cli("sweep", str(sweep), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert f"ran {missing}, skipped {12 - missing} already done" in rerun.stdout
    assert {run_id: files_of(sweep_dir, run_id) for run_id in done_ids} == kept
    assert figures(sweep_dir / "index.csv") == figures(uninterrupted / "index.csv")
    resumed = 0
    for row in read_index(sweep_dir / "index.csv"):
        ours = sweep_dir / row["run_id"] / "trace.csv"
        assert numbers(ours) == numbers(uninterrupted / row["run_id"] / "trace.csv")
        resumed += _record(ours.parent).get("resumed_from") is not None
    assert resumed >= 1  # at least one run continued from a checkpoint


def _status(run_json: Path) -> str:
    try:
        return str(_record(run_json.parent).get("status"))
    except (FileNotFoundError, ValueError):
        return "pending"


def _record(run_dir: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((run_dir / "run.json").read_text()))


def _no_holders(sweep_dir: Path) -> bool:
    from parsgd.sweep.state import read_plan, run_state

    _, points = read_plan(sweep_dir)
    return all(run_state(sweep_dir, p).status != "running" for p in points)


# Seconds of steps (4M steps, 2 trials, 2 workers) with trace rows every 5%: a signal sent
# once rows are written always lands mid-run, and the incomplete trace proves that it did.
LONG = {"sgd": {"steps": 4_000_000}, "averaging": {"every": 100}, "eval": {"every": 200_000}}
LONG_ROWS = 2 * (4_000_000 // 200_000 + 1)


def test_sigterm_mid_run_interrupts_with_checkpoint_and_resumes_exactly(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", **LONG)
    straight = run_cli("run", str(config), "--out", str(tmp_path / "a"))
    assert straight.returncode == 0, straight.stderr
    assert trace_rows(tmp_path / "a" / "t") == LONG_ROWS
    proc = start_cli("run", str(config), "--out", str(tmp_path / "b"), logs=tmp_path / "logs")
    run_dir = tmp_path / "b" / "t"
    signal_in_steps(proc, run_dir, signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, cli_output(tmp_path / "logs")
    record = _record(run_dir)
    assert record["status"] == "interrupted"
    assert "SIGTERM" in record["reason"]
    assert 2 <= trace_rows(run_dir) < LONG_ROWS  # stopped mid-run, not at the end
    assert (run_dir / "checkpoint.npz").exists()
    resumed = run_cli("run", str(config), "--out", str(tmp_path / "b"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert numbers(run_dir / "trace.csv") == numbers(tmp_path / "a" / "t" / "trace.csv")
    assert not (run_dir / "checkpoint.npz").exists()
    final = "final_mean_over_trials"
    assert _record(run_dir)[final] == _record(tmp_path / "a" / "t")[final]
    assert _record(run_dir)["resumed_from"] is not None


def test_sigusr1_stops_a_run_like_sigterm(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", **LONG)
    proc = start_cli("run", str(config), "--out", str(tmp_path), logs=tmp_path / "logs")
    signal_in_steps(proc, tmp_path / "t", signal.SIGUSR1)
    assert proc.wait(timeout=60) == 130, cli_output(tmp_path / "logs")
    record = _record(tmp_path / "t")
    assert record["status"] == "interrupted" and "SIGUSR1" in record["reason"]
    assert 2 <= trace_rows(tmp_path / "t") < LONG_ROWS
    assert (tmp_path / "t" / "checkpoint.npz").exists()


def test_two_sweeps_sharing_a_directory_run_each_point_once(tmp_path: Path) -> None:
    # Four points of a few seconds each (24M steps at d = 256: ~3 s here), one at a time per
    # sweep; the second sweep starts once the first is running a point: both must get points.
    base = write_config(
        tmp_path / "base.yaml", workers=1, data={"kind": "gaussian_linear", "n": 2000, "d": 256},
        sgd={"steps": 12_000_000, "step_size": 0.001}, averaging={"every": 1000},
        eval={"every": 4_000_000},
    )  # fmt: skip
    grid = {"sgd.step_size": [0.0005, 0.001, 0.0015, 0.002]}  # stable: step size x d < 1
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "avg", "base": base.name, "grid": grid}))
    out = tmp_path / "out"
    command = ("sweep", str(sweep), "--out", str(out), "--jobs", "1")
    first = start_cli(*command, logs=tmp_path / "first")
    assert wait_until(
        lambda: (
            any(_status(p) == "running" for p in (out / "avg").glob("*/run.json"))
            or first.poll() is not None
        ),
        120,
        0.01,
    )
    done = sum(_status(p) == "completed" for p in (out / "avg").glob("*/run.json"))
    assert first.poll() is None and done < 4, "the first sweep ended before the second began"
    second = start_cli(*command, logs=tmp_path / "second")
    ran = []
    for proc, logs in ((first, "first"), (second, "second")):
        assert proc.wait(timeout=600) == 0, cli_output(tmp_path / logs)
        (count,) = re.findall(r"ran (\d+)", cli_output(tmp_path / logs)[0])
        ran.append(int(count))
    assert sum(ran) == 4 and min(ran) >= 1, ran  # each point once, and both sweeps ran some
    rows = read_index(out / "avg" / "index.csv")
    assert [r["status"] for r in rows] == ["completed"] * 4
    for row in rows:
        log = (out / "avg" / row["run_id"] / "log.txt").read_text()
        assert log.count("config hash") == 1, f"{row['run_id']} ran twice"
        assert numbers(out / "avg" / row["run_id"] / "trace.csv")


def test_seeds_zip_and_inline_config(tmp_path: Path) -> None:
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "inline",
                "config": {"workers": 1, "sgd": {"steps": 200}, "data": {"n": 500, "d": 4}},
                "zip": {"sgd.step_size": [0.01, 0.02], "data.noise": [0.1, 0.2]},
                "seeds": [5, 6],
                "trials": 2,
                "set": ["sgd.steps=100", "eval.every=25"],
            }
        )
    )
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = read_index(tmp_path / "out" / "inline" / "index.csv")
    assert [(r["sgd.step_size"], r["data.noise"], r["seed"]) for r in rows] == [
        ("0.01", "0.1", "5"), ("0.01", "0.1", "6"), ("0.02", "0.2", "5"), ("0.02", "0.2", "6")
    ]  # fmt: skip
    config = yaml.safe_load(
        (tmp_path / "out" / "inline" / rows[3]["run_id"] / "config.yaml").read_text()
    )
    assert config["seed"] == 6 and config["trials"] == 2 and config["data"]["noise"] == 0.2
    assert config["sgd"]["steps"] == 100
    assert config["name"] == rows[3]["run_id"]


def test_progress_lines_count_runs(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, grid={"sgd.step_size": [0.01, 0.02, 0.05]})
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in progress] == ["[1/3]", "[2/3]", "[3/3]"]


def test_shipped_sweep_expands() -> None:
    done = run_cli("sweep", "configs/sweeps/averaging.yaml", "--list")
    assert done.returncode == 0, done.stderr
    assert "# sweep averaging: 12 points over averaging.every, sgd.step_size" in done.stdout


def test_failed_runs_are_rerun_and_completed_ones_kept(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, grid={"sgd.step_size": [0.01, 0.02, 0.05]})
    out = tmp_path / "out"
    failing = run_cli("sweep", str(sweep), "--out", str(out), env={"PARSGD_FAULT": "0:100:raise"})
    assert failing.returncode == 1
    rows = read_index(out / "avg" / "index.csv")
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert "3 failed" in run_cli("sweep", str(sweep), "--out", str(out), "--status").stdout
    fixed = run_cli("sweep", str(sweep), "--out", str(out))
    assert fixed.returncode == 0, fixed.stderr
    assert "ran 3, skipped 0" in fixed.stdout
    assert [r["status"] for r in read_index(out / "avg" / "index.csv")] == ["completed"] * 3


def test_expansion_is_pure_and_run_ids_are_stable(tmp_path: Path) -> None:
    from parsgd.sweep.spec import expand_sweep, load_sweep

    sweep = load_sweep(write_sweep(tmp_path, seeds=[0, 1]))
    first, again = expand_sweep(sweep, workers=3), expand_sweep(sweep, workers=3)
    assert [p.run_id for p in first] == [p.run_id for p in again]
    assert [p.index for p in first] == list(range(24))
    assert first[0].values == {"averaging.every": 1, "sgd.step_size": 0.01, "seed": 0}
    assert first[0].run_id.startswith("every1_step_size0.01_seed0-")
    assert first[0].spec.name == first[0].run_id == first[0].spec.to_dict()["name"]
    assert first[0].spec.workers == 1  # explicit workers are kept

    auto = tmp_path / "auto.yaml"
    auto.write_text(yaml.safe_dump({"config": {"workers": "auto"}, "grid": {"seed": [0]}}))
    points = {w: expand_sweep(load_sweep(auto), workers=w)[0] for w in (1, 2)}
    assert points[1].spec.workers == 1 and points[2].spec.workers == 2
    assert points[1].run_id != points[2].run_id  # "auto" resolved for where the runs run
