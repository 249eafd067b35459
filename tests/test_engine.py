"""The engine computes what the algorithm says, on real processes, reproducibly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from parsgd.engine.rundir import read_trace
from parsgd.engine.runner import run_experiment
from parsgd.schedules import AveragingSchedule
from tests.helpers import make_config, numbers


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"sgd__batch_size": 3, "sgd__init": "independent", "sgd__init_scale": 0.5},
        {"data__stream": "true", "averaging__every": "end"},
        {"workers": 1},
        {"workers": 3, "data__d": 7, "objective__l2": 0.01},
        {"averaging__every": 7, "averaging__warmup": 20, "averaging__growth": 1.5},
        {"sgd__init": "shared", "checkpoint__every": 3},
    ],
    ids=[
        "default",
        "batch-independent",
        "stream-oneshot",
        "one-worker",
        "three-workers-l2",
        "warmup-growth",
        "shared-checkpoint",
    ],
)
def test_serial_and_processes_agree_bit_for_bit(tmp_path: Path, overrides: dict) -> None:
    serial = run_experiment(make_config(backend="serial", **overrides), tmp_path / "s")
    procs = run_experiment(make_config(backend="processes", **overrides), tmp_path / "p")
    assert serial.status == procs.status == "completed"
    a, b = numbers(serial.directory), numbers(procs.directory)
    assert len(a) == len(b) > 0
    assert a == b


def test_same_config_twice_gives_identical_traces(tmp_path: Path) -> None:
    first = run_experiment(make_config(), tmp_path / "a")
    second = run_experiment(make_config(), tmp_path / "b")
    assert numbers(first.directory) == numbers(second.directory)


def test_run_json_lists_distinct_worker_pids(tmp_path: Path) -> None:
    result = run_experiment(make_config(workers=3), tmp_path)
    record = json.loads((result.directory / "run.json").read_text())
    assert record["status"] == "completed"
    assert len(set(record["pids"])) == 3 and os.getpid() not in record["pids"]
    assert record["coordinator_pid"] == os.getpid()
    assert set(record["timings"]) == {"compute_s", "sync_s", "eval_s", "total_s"}
    assert record["samples"] == 2 * 400 * 3 and record["updates_per_s"] > 0


def test_syncs_column_follows_the_schedule(tmp_path: Path) -> None:
    config = make_config(averaging__every=7, averaging__warmup=5, eval__every=3, trials=1)
    result = run_experiment(config, tmp_path)
    averaging = AveragingSchedule.from_config(config["averaging"]).averaging_steps(400)
    for row in read_trace(result.directory / "trace.csv"):
        step = int(row["step"])
        assert int(row["syncs"]) == int(np.sum(averaging <= step))
        assert int(row["samples"]) == step * 2


def _variance_at_sync(run_dir: Path) -> float:
    rows = [r for r in read_trace(run_dir / "trace.csv") if int(r["step"]) > 0]
    return float(np.mean([float(r["variance"]) for r in rows]))


def test_spread_grows_with_the_interval_and_vanishes_with_one_worker(tmp_path: Path) -> None:
    common = {"eval__every": 100, "sgd__steps": 1000, "trials": 3}
    every10 = run_experiment(make_config(averaging__every=10, **common), tmp_path / "a")
    every100 = run_experiment(make_config(averaging__every=100, **common), tmp_path / "b")
    alone = run_experiment(make_config(workers=1, averaging__every=100, **common), tmp_path / "c")
    assert _variance_at_sync(every100.directory) > _variance_at_sync(every10.directory) > 0
    assert _variance_at_sync(alone.directory) == 0.0


def test_every_step_averaging_keeps_workers_together(tmp_path: Path) -> None:
    """With every: 1 the spread is recorded before the average, so it is one step's drift:
    nonzero (the workers drew different samples) but a fraction of ten steps' drift."""
    common = {"eval__every": 10, "sgd__steps": 200, "trials": 1}
    result = run_experiment(make_config(averaging__every=1, **common), tmp_path / "a")
    rows = read_trace(result.directory / "trace.csv")
    assert all(int(r["syncs"]) == int(r["step"]) for r in rows)
    assert float(rows[0]["variance"]) == 0.0  # a common start
    together = np.array([float(r["variance"]) for r in rows[1:]])
    apart_rows = read_trace(
        run_experiment(make_config(averaging__every=10, **common), tmp_path / "b").directory
        / "trace.csv"
    )
    apart = np.array([float(r["variance"]) for r in apart_rows[1:]])  # ten steps' drift
    assert np.all(together > 0)
    assert together.mean() < 0.3 * apart.mean(), (together.mean(), apart.mean())


def test_loss_decreases_and_optimum_is_known(tmp_path: Path) -> None:
    result = run_experiment(make_config(trials=1), tmp_path)
    rows = read_trace(result.directory / "trace.csv")
    first, last = rows[0], rows[-1]
    assert float(last["loss"]) < 0.5 * float(first["loss"])
    assert float(last["subopt"]) >= 0 and float(last["dist_opt_sq"]) >= 0
    assert float(last["subopt"]) < float(first["subopt"])
