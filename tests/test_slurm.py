"""``parsgd sweep --slurm``: the sbatch text (golden file) and a real one-node SLURM cluster.

The cluster tests need Debian's ``slurm-wlm`` and ``munge`` and root (``.ci/run`` installs
them); elsewhere they skip and say why. Regenerate the golden file with
``PARSGD_UPDATE_GOLDEN=1 python -m pytest tests/test_slurm.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, skip_unless_available, wait_until, write_config
from slurm_cluster import LocalSlurm, unavailable_reason

from parsgd.engine.rundir import read_trace
from parsgd.sweep.slurm import SbatchOptions, make_sbatch_script
from parsgd.sweep.state import read_index

GOLDEN = Path(__file__).parent / "golden" / "sweep.sbatch"
GRID = {"averaging.every": [1, 10, 100, "end"], "sgd.step_size": [0.01, 0.02, 0.05]}


def test_sbatch_script_matches_golden_file() -> None:
    options = SbatchOptions(
        job_name="parsgd-averaging",
        tasks=6,
        runs=12,
        cpus_per_task=4,
        time="00:30:00",
        log_dir=Path("/scratch/results/averaging/slurm"),
        workdir=Path("/home/ada/my project"),
        command=(
            "/home/ada/my project/.venv/bin/python",
            "-m",
            "parsgd",
            "sweep",
            "/home/ada/my project/sweeps/averaging.yaml",
            "--array-task",
            "/scratch/results/averaging/slurm/tasks-20260101-000000-1.json",
        ),
        array_parallelism=3,
        mem="2G",
        partition="short",
        signal_s=90,
    )
    text = make_sbatch_script(options)
    if os.environ.get("PARSGD_UPDATE_GOLDEN"):
        # Never a pass: comparing with the file just written would prove nothing.
        old = GOLDEN.read_text() if GOLDEN.exists() else ""
        GOLDEN.write_text(text)
        pytest.fail(
            f"golden file rewritten ({'changed' if old != text else 'unchanged'}); "
            "review `git diff tests/golden` and rerun without PARSGD_UPDATE_GOLDEN"
        )
    assert text == GOLDEN.read_text()
    assert make_sbatch_script(options) == text  # pure


def write_sweep(tmp_path: Path, grid: dict[str, Any], steps: int = 400) -> Path:
    base = write_config(
        tmp_path / "base.yaml", workers=1, sgd={"steps": steps}, eval={"every": steps // 8}
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "avg", "base": base.name, "grid": grid}))
    return path


def test_dry_run_writes_the_script_and_tasks_without_submitting(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, GRID)
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run",
        "--cpus-per-task", "1", "--runs-per-task", "5", "--array-parallelism", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = (out / "avg" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-2%2\n" in script
    assert "#SBATCH --cpus-per-task=1\n" in script
    assert f"exec {sys.executable} -m parsgd sweep {sweep.resolve()} --array-task " in script
    (tasks_file,) = (out / "avg" / "slurm").glob("tasks-*.json")
    tasks = json.loads(tasks_file.read_text())["tasks"]
    assert [len(t) for t in tasks] == [5, 5, 2]
    assert {p["config"]["workers"] for t in tasks for p in t} == {1}
    assert not (out / "avg" / "index.csv").exists()  # nothing ran


def test_workers_more_than_cpus_per_task_is_refused(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"workers": [1, 4]})
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run", "--cpus-per-task", "2"
    )
    assert done.returncode == 2
    assert "sweep point 2: workers 4 is more than --cpus-per-task 2" in done.stderr
    assert not out.exists()


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    skip_unless_available("slurm", unavailable_reason())
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _wait_for_job(cluster: LocalSlurm, job_id: str, timeout_s: float = 180) -> None:
    assert wait_until(lambda: not cluster.squeue(job_id), timeout_s, 0.25), cluster.logs()


def _job_id(stdout: str) -> str:
    assert stdout.startswith("submitted job array "), stdout
    return stdout.split()[3].rstrip(":")


def _figures(index: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_index(index)]


def test_sweep_as_job_array_matches_local_run(tmp_path: Path, slurm: LocalSlurm) -> None:
    sweep = write_sweep(tmp_path, GRID)
    local = run_cli("sweep", str(sweep), "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr

    out = tmp_path / "slurm"
    tic = time.monotonic()
    submitted = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm",
        "--cpus-per-task", "1", "--runs-per-task", "2", "--time", "10",
        env=slurm.env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    status = run_cli("sweep", str(sweep), "--out", str(out), "--status", env=slurm.env)
    assert "squeue:" in status.stdout or "12/12 done" in status.stdout, status.stdout
    _wait_for_job(slurm, job_id)
    wall_s = time.monotonic() - tic
    print(f"SLURM array of 12 runs in 6 tasks: {wall_s:.1f} s from sbatch to the last task")

    sweep_dir = out / "avg"
    rows = read_index(sweep_dir / "index.csv")
    assert [r["status"] for r in rows] == ["completed"] * 12, slurm.logs()
    assert _figures(sweep_dir / "index.csv") == _figures(tmp_path / "local" / "avg" / "index.csv")
    task_ids = set()
    for row in rows:
        record = json.loads((sweep_dir / row["run_id"] / "run.json").read_text())
        assert record["slurm_array_job_id"] == job_id
        assert record["workers"] == 1
        task_ids.add(record["slurm_array_task_id"])
    assert task_ids == {str(i) for i in range(6)}

    status = run_cli("sweep", str(sweep), "--out", str(out), "--status", env=slurm.env)
    assert status.returncode == 0
    assert "12/12 done (12 completed)" in status.stdout
    again = run_cli("sweep", str(sweep), "--out", str(out), "--slurm", env=slurm.env)
    assert again.returncode == 0
    assert "all 12 runs are done; nothing to submit" in again.stdout


def test_time_limit_signal_checkpoints_requeues_and_resumes(
    tmp_path: Path, slurm: LocalSlurm
) -> None:
    """USR1 ahead of the time limit: the run checkpoints, the task requeues itself, resumes."""
    # Long enough (seconds, even with the compiled fast path) for USR1 to land mid-run.
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01]}, steps=6_000_000)
    reference = run_cli("sweep", str(sweep), "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "slurm"
    submitted = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--cpus-per-task", "1",
        env=slurm.env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    (run_dir,) = [p.parent for p in (tmp_path / "ref" / "avg").glob("*/run.json")]
    trace = out / "avg" / run_dir.name / "trace.csv"
    assert wait_until(lambda: trace.exists() and len(trace.read_text().splitlines()) > 1, 120)
    signalled = subprocess.run(
        ["scancel", "--batch", "--signal=USR1", f"{job_id}_0"],
        env=slurm.env,
        capture_output=True,
        text=True,
    )
    assert signalled.returncode == 0, signalled.stderr
    _wait_for_job(slurm, job_id)
    record = json.loads((trace.parent / "run.json").read_text())
    log = "\n".join(p.read_text() for p in (out / "avg" / "slurm").glob("*.out"))
    assert record["status"] == "completed", log
    assert record["resumed_from"] is not None, log
    assert "requeued" in log
    columns = ("trial", "step", "samples", "syncs", "loss", "variance", "dist_opt_sq")
    ours = [tuple(r[c] for c in columns) for r in read_trace(trace)]
    theirs = [tuple(r[c] for c in columns) for r in read_trace(run_dir / "trace.csv")]
    assert ours == theirs


@pytest.mark.parametrize(("sbatch_args", "workers"), [(["-n", "1"], 1), (["-c", "2"], 2)])
def test_run_inside_an_allocation_uses_its_cpus(
    tmp_path: Path, slurm: LocalSlurm, sbatch_args: list[str], workers: int
) -> None:
    config = write_config(tmp_path / "c.yaml", workers="auto")
    command = f"{sys.executable} -m parsgd run {config} --out {tmp_path / 'out'}"
    submitted = subprocess.run(
        ["sbatch", "--parsable", *sbatch_args, "-o", str(tmp_path / "job.out"), "--wrap", command],
        env=slurm.env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    _wait_for_job(slurm, job_id)
    record = json.loads((tmp_path / "out" / "t" / "run.json").read_text())
    assert record["status"] == "completed", (tmp_path / "job.out").read_text()
    assert record["workers"] == workers
    assert record["slurm_job_id"] == job_id
