"""The one compiled meeting: numpy's average bit for bit, stop, divergence, abort, stall;
serial and processes give the same trace bit for bit on every objective and schedule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml
from backend_pairs import Pairs, pair_traces, run_on_both_backends
from conftest import ROOT, all_gone, run_cli, wait_until, write_config
from numba import njit

from parsgd.engine import meetings
from parsgd.engine.barrier import PAD, SPIN_WITH_CORES_NS, spin_budget, wait
from parsgd.engine.control import (
    ABORT,
    ABORTED,
    GLOBAL,
    GROUP,
    N_CONTROL,
    NONFINITE,
    OK,
    PARENT_GONE,
    STALLED,
    STOP,
    STOP_REQUEST,
)
from parsgd.engine.plan import WINDOW
from parsgd.engine.rundir import read_trace
from parsgd.engine.worker import FAULT_ENV
from parsgd.problems.steps import DenseLinear
from parsgd.views import borrowed, prefetch
from tests.helpers import numbers


def _naive_average(W: np.ndarray, group: int) -> np.ndarray:
    """The reference: each group's rows added in order, the group sums in order, / rows."""
    total = None
    for lo in range(0, W.shape[0], group):
        part = W[lo].copy()
        for r in range(lo + 1, lo + group):
            part = part + W[r]
        total = part if total is None else total + part
    assert total is not None
    return total / W.shape[0]


@pytest.mark.parametrize(("M", "group", "d"), [(1, 1, 5), (2, 2, 7), (3, 3, 1100), (4, 2, 9)])
def test_average_rows_equals_the_naive_numpy_average(M: int, group: int, d: int) -> None:
    W = np.random.default_rng(M * d).standard_normal((M, d)) * 1e3
    out = np.zeros(d)
    assert meetings.average_rows(W, 0, M, group, out, np.zeros(min(d, 512)))
    expected = _naive_average(W, group)
    assert np.array_equal(out, expected)  # bit for bit, so certainly within 1e-12
    # A plausible wrong answer (numpy's pairwise mean) is not what it computes for M=3.
    assert np.max(np.abs(out - W.mean(axis=0))) < 1e-12 * np.max(np.abs(W))
    W[-1, -1] = np.inf
    assert not meetings.average_rows(W, 0, M, group, out, np.zeros(min(d, 512)))


def _block(M: int, barrier: bool, control: np.ndarray, levels: list[int], W0: np.ndarray):
    """Meetings at steps 1..len(levels), one least-squares step each, for ranks 0..M-1 (or
    rank 0 alone behind the barrier, its peers absent)."""
    d, n = W0.shape[1], 10
    X, y = np.ones((n, d)), np.ones(n)
    W = np.zeros((2, M, d))
    W[0] = W0
    steps = len(levels)
    ranks = np.arange(1 if barrier else M, dtype=np.int64)
    inputs = np.full((len(ranks), steps, 1), 0.5)
    state, pending = np.zeros(2, np.int64), np.zeros(len(ranks), np.int64)
    result = meetings.run_block(
        DenseLinear(X, y, 0.0, 0), W, np.zeros((len(ranks), d)),
        np.zeros(d), np.zeros(M * PAD, np.int64), control, ranks,
        np.arange(M, dtype=np.int64), 2 if M % 2 == 0 else M,
        2 if M % 2 == 0 else M, inputs, np.full(steps, 0.1), 0,
        np.arange(1, steps + 1, dtype=np.int64), np.array(levels, np.int64),
        np.ones(steps, bool), 0, barrier, 0, state, pending, np.zeros(2),
    )  # fmt: skip
    return result, W, pending


def test_stop_request_ends_the_block_at_the_next_global_meeting() -> None:
    control = np.zeros(N_CONTROL, np.int64)
    control[STOP_REQUEST] = 1
    (status, count, decision), _, _ = _block(
        4, False, control, [GROUP, GROUP, GLOBAL, GLOBAL], np.zeros((4, 3))
    )
    assert (status, count, decision) == (OK, 3, STOP)


def test_group_divergence_is_decided_at_the_next_global_meeting() -> None:
    W0 = np.zeros((4, 3))
    W0[3, 0] = np.nan  # group 1 (ranks 2, 3) diverges at the first, group-level, meeting
    control = np.zeros(N_CONTROL, np.int64)
    (status, count, decision), W, _ = _block(4, False, control, [GROUP, GROUP, GLOBAL, GLOBAL], W0)
    assert (status, count, decision) == (OK, 3, NONFINITE)
    # Group 0 stayed finite through the group meetings: its rows averaged among themselves.
    assert np.isfinite(W[0, :2]).all()


def test_groups_average_among_themselves_then_globally() -> None:
    W0 = np.arange(12, dtype=float).reshape(4, 3)
    X = np.ones((10, 3))
    control = np.zeros(N_CONTROL, np.int64)
    _, W, _ = _block(4, False, control, [GROUP], W0)
    # One least-squares step at x = 1, y = 1, eta 0.1 on each row, then each pair averaged.
    stepped = W0 - 0.1 * ((W0 @ X[0]) - 1.0)[:, None] * X[0]
    assert np.array_equal(W[1, 0], _naive_average(stepped[:2], 2))
    assert np.array_equal(W[1, 2], _naive_average(stepped[2:], 2))
    _, W, _ = _block(4, False, control, [GLOBAL], W0)
    assert np.array_equal(W[1, 3], _naive_average(stepped, 2))


def test_barrier_gives_up_on_abort() -> None:
    control = np.zeros(N_CONTROL, np.int64)
    control[ABORT] = 1  # rank 1 never arrives
    (status, count, _), _, _ = _block(2, True, control, [GLOBAL], np.zeros((2, 3)))
    assert (status, count) == (ABORTED, 0)


def test_barrier_gives_up_on_a_peer_that_never_answers_a_stop() -> None:
    arrive, control = np.zeros(2 * PAD, np.int64), np.zeros(N_CONTROL, np.int64)
    control[STOP_REQUEST] = 1  # rank 1 never arrives (as if SIGSTOPped)
    assert wait(arrive, control, 0, 1, 0, 2, os.getppid()) == STALLED
    assert wait(arrive, control, 0, 1, 0, 2, os.getppid() + 1) == PARENT_GONE
    arrive[PAD] = 1  # now it has arrived
    assert wait(arrive, control, 0, 1, 0, 2, os.getppid()) == OK


OBJECTIVES = {
    "least_squares": {},
    "logistic": {
        "objective": {"kind": "logistic", "l2": 0.001},
        "data": {"kind": "logistic_planted", "n": 500, "d": 6},
    },
    "hinge": {
        "objective": {"kind": "hinge", "l2": 0.001},
        "data": {"kind": "logistic_planted", "n": 500, "d": 6},
    },
    "quadratic": {
        "data": {"kind": "none"},
        "objective": {
            "kind": "quadratic",
            "d": 4,
            "eig_max": 1.0,
            "eig_min": 0.25,
            "sigma": 0.5,
            "beta": 0.5,
        },
        "sgd": {"init": "zeros"},
    },
    "pca": {
        "data": {
            "kind": "pca_spectrum",
            "n": 500,
            "d": 5,
            "eigenvalues": [1.0, 0.5, 0.2, 0.1, 0.1],
        },
        "objective": {"kind": "pca"},
        "sgd": {"init": "independent", "step_size": 0.02},
    },
    "mlp": {
        "data": {"kind": "logistic_planted", "n": 500, "d": 6},
        "objective": {"kind": "mlp", "hidden": 4, "l2": 0.0001},
    },
    "stream": {"data": {"kind": "gaussian_linear", "d": 5, "noise": 0.3, "stream": True}},
    "softmax": {
        "data": {"kind": "logistic_planted", "n": 500, "d": 6},
        "objective": {"kind": "softmax", "l2": 0.001},
    },
}


def _objective_config(tmp_path: Path, objective: str, **sections: object) -> Path:
    config = write_config(tmp_path / "c.yaml", **sections)
    raw = yaml.safe_load(config.read_text())
    for key, section in OBJECTIVES[objective].items():  # whole sections, not merged
        raw[key] = {**raw[key], **section} if key == "sgd" else section
    config.write_text(yaml.safe_dump(raw))
    return config


SCHEDULES = {
    "every1": {"every": 1},
    "end": {"every": "end"},
    "at": {"every": None, "at": [5, 17, 200, 333]},
    "phases": {"every": None, "phases": [{"steps": 100, "every": 1}, {"steps": 300, "every": 25}]},
    "warmup": {"every": 20, "warmup": 30},
    "growth": {"every": 2, "growth": 1.5},
    "groups": {"every": 2, "global_every": 10},
}


def _case_configs(root: Path) -> dict[str, dict[str, Any]]:
    """Each case's whole config, as ``parsgd run`` would be given it: an objective (with
    averaging every 3 and a checkpoint every 7) or an averaging schedule."""
    cases: dict[str, dict[str, Any]] = {}
    for objective in OBJECTIVES:
        path = _objective_config(root, objective, averaging={"every": 3}, checkpoint={"every": 7})
        cases[objective] = yaml.safe_load(path.read_text())
    for schedule, averaging in SCHEDULES.items():
        nodes = 2 if schedule == "groups" else 1
        path = write_config(root / "c.yaml", averaging=averaging, nodes=nodes)
        cases[schedule] = yaml.safe_load(path.read_text())
    path = write_config(root / "c.yaml", **WINDOWS)
    cases["windows"] = yaml.safe_load(path.read_text())
    return cases


# Averaging every step for long enough that the plan is walked in several windows
# (plan.WINDOW meetings each), with checkpoints and records falling inside them.
WINDOWS: dict[str, Any] = {
    "sgd": {"steps": 3 * WINDOW + 1234},
    "averaging": {"every": 1},
    "eval": {"every": 25_000},
    "checkpoint": {"every": 40_001},
}


@pytest.fixture(scope="module")
def backend_pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    """Every case on both backends, by one ``parsgd sweep`` (``backend_pairs.py``)."""
    root = tmp_path_factory.mktemp("backends")
    return run_on_both_backends(root, _case_configs(root))


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_serial_and_processes_agree_bit_for_bit(backend_pairs: Pairs, objective: str) -> None:
    serial, processes = pair_traces(backend_pairs, objective)
    assert serial == processes
    assert len(serial) > 3


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_schedule_kind_agrees_bit_for_bit(backend_pairs: Pairs, schedule: str) -> None:
    serial, processes = pair_traces(backend_pairs, schedule)
    assert serial == processes


def test_a_plan_walked_in_several_windows_agrees_bit_for_bit(backend_pairs: Pairs) -> None:
    serial, processes = pair_traces(backend_pairs, "windows")
    assert serial == processes
    rows = [r for r in serial if int(r["trial"]) == 0]  # a row every 25,000 steps
    assert [int(r["step"]) for r in rows][-1] == WINDOWS["sgd"]["steps"]
    assert all(int(r["syncs"]) == int(r["step"]) for r in rows)


def test_divergence_is_detected_on_both_backends(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", averaging={"every": 1}, sgd={"step_size": 5.0})
    reasons = []
    for backend in ("serial", "processes"):
        out = tmp_path / backend
        done = run_cli("run", str(config), "--out", str(out), "--set", f"backend={backend}")
        assert done.returncode == 3, done.stderr
        reasons.append(json.loads((out / "t" / "run.json").read_text())["reason"])
    assert reasons[0] == reasons[1] and "non-finite" in reasons[0]


# Each objective dies one way inside its compiled meetings; together they cover every way.
DEATHS = [
    ("least_squares", "sigkill", "killed by SIGKILL"),
    ("logistic", "segfault", "killed by SIGSEGV"),
    ("hinge", "raise", "raised RuntimeError: injected fault"),
    ("quadratic", "exit3", "exited with status 3"),
    ("pca", "os_exit0", "exited with status 0 before finishing"),
    ("mlp", "sigkill", "killed by SIGKILL"),
    ("stream", "segfault", "killed by SIGSEGV"),
]


@pytest.mark.parametrize(("objective", "kind", "cause"), DEATHS, ids=[d[0] for d in DEATHS])
def test_a_worker_dying_in_compiled_meetings_fails_the_run(
    tmp_path: Path, objective: str, kind: str, cause: str
) -> None:
    config = _objective_config(tmp_path, objective, averaging={"every": 1}, eval={"every": 200})
    done = run_cli("run", str(config), "--out", str(tmp_path), env={FAULT_ENV: f"1:250:{kind}"})
    assert done.returncode == 1, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "failed"
    assert f"worker 1 (pid {record['pids'][1]})" in record["reason"]
    assert cause in record["reason"]
    assert "at step 249" in record["reason"] or "after step 249" in record["reason"]
    assert wait_until(lambda: all_gone(record["pids"]), 5)


def test_a_stop_request_with_a_stopped_worker_fails_the_run_naming_it(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", trials=1, sgd={"steps": 100_000}, averaging={"every": 1},
        eval={"every": 1000},
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "parsgd", "run", str(config), "--out", str(tmp_path)],
        cwd=ROOT, env={**os.environ, FAULT_ENV: "1:300:sigstop"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_json = tmp_path / "t" / "run.json"

    def stopped() -> bool:
        pids = json.loads(run_json.read_text())["pids"] if run_json.exists() else []
        return len(pids) == 2 and psutil.Process(pids[1]).status() == psutil.STATUS_STOPPED

    try:
        assert wait_until(stopped, 60)
        assert proc.poll() is None  # hung on the stopped peer, as a stopped job would be
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr
    record = json.loads(run_json.read_text())
    assert record["status"] == "failed"
    pid = record["pids"][1]
    assert f"worker 1 (pid {pid}, stopped) did not reach a meeting" in record["reason"]
    assert wait_until(lambda: all_gone(record["pids"]), 5)


@pytest.mark.parametrize("case", ["nodes1", "nodes2", "windows"])
def test_resume_after_a_crash_reproduces_the_serial_trace(tmp_path: Path, case: str) -> None:
    """A crash, then ``--resume`` from the last checkpoint; "windows" resumes mid-window of a
    plan walked in several (the resumed walk cuts its windows elsewhere)."""
    if case == "windows":
        config = write_config(tmp_path / "c.yaml", trials=1, **WINDOWS)
        fault = f"1:{2 * WINDOW + 999}:sigkill"
    else:
        nodes = int(case[-1])
        averaging = {"every": 3, "global_every": 12} if nodes > 1 else {"every": 3}
        config = write_config(
            tmp_path / "c.yaml", nodes=nodes, averaging=averaging, checkpoint={"every": 5}
        )
        fault = "1:250:sigkill"
    cut = tmp_path / "cut"
    crashed = run_cli("run", str(config), "--out", str(cut), env={FAULT_ENV: fault})
    assert crashed.returncode == 1, crashed.stderr
    assert (cut / "t" / "checkpoint.npz").exists()
    resumed = run_cli("run", str(config), "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((cut / "t" / "run.json").read_text())["resumed_from"]["step"] > 0
    whole = tmp_path / "whole"
    done = run_cli("run", str(config), "--out", str(whole), "--set", "backend=serial")
    assert done.returncode == 0, done.stderr
    assert numbers(cut / "t") == numbers(whole / "t")


def test_nodes_and_global_every_through_the_command_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", trials=1, workers=2, nodes=2,
        averaging={"every": 1, "global_every": 100}, eval={"every": 50},
    )  # fmt: skip
    dry = run_cli("run", str(config), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "# global averaging steps: 100, 200, 300, 400" in dry.stdout
    assert "# global syncs per trial: 4" in dry.stdout
    done = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = read_trace(tmp_path / "out" / "t" / "trace.csv")
    assert [int(r["syncs_global"]) for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert [int(r["samples"]) for r in rows][-1] == 400 * 4  # nodes x workers workers
    # Averaged within their node every step, the workers of a node stay much closer to
    # each other than the nodes do between global rounds.
    mid = [r for r in rows if int(r["step"]) % 100 == 50]
    assert all(float(r["spread_within_nodes"]) < float(r["spread_between_nodes"]) for r in mid)
    assert json.loads((tmp_path / "out" / "t" / "run.json").read_text())["nodes"] == 2


@pytest.mark.parametrize("global_every", [15, 3])
def test_a_global_every_off_the_rounds_is_one_line_and_exit_2(
    tmp_path: Path, global_every: int
) -> None:
    config = write_config(tmp_path / "c.yaml", averaging={"every": 2, "global_every": global_every})
    done = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "parsgd: error: averaging.global_every must be a multiple of averaging.every (2) or "
        f"end; got {global_every}"
    )
    assert not (tmp_path / "out").exists()


def test_a_wait_spins_only_where_every_rank_has_a_core() -> None:
    # Ranks sharing cores yield at once: a spin would keep the peer it waits for off the core.
    assert spin_budget(2, 2) == SPIN_WITH_CORES_NS > 0
    assert spin_budget(3, 2) == 0 and spin_budget(8, 2) == 0


@njit
def _through_borrowed(W: np.ndarray, row: int) -> float:
    view = borrowed(W[row, 1:])
    for j in range(view.shape[0]):
        prefetch(view, j)  # a hint only: changes nothing
        view[j] += 1.0
    return float(view.sum())


def test_a_borrowed_view_reads_and_writes_its_parent() -> None:
    W = np.arange(12.0).reshape(3, 4)
    expected = W.copy()
    expected[1, 1:] += 1.0
    assert _through_borrowed(W, 1) == expected[1, 1:].sum()
    assert np.array_equal(W, expected)


@njit
def _step_through_borrowed_pack(data: DenseLinear, w: np.ndarray) -> tuple[float, int]:
    pack = borrowed(data)  # every array of the pack borrowed, the scalars kept
    pack.X[0, 0] = -1.0
    for j in range(w.shape[0]):
        w[j] += pack.X[1, j] * pack.y[1]
    return pack.l2, pack.code


def test_a_borrowed_pack_is_the_same_arrays_and_scalars() -> None:
    X, y = np.arange(6.0).reshape(2, 3), np.array([0.5, 2.0])
    w = np.zeros(3)
    assert _step_through_borrowed_pack(DenseLinear(X, y, 0.25, 7), w) == (0.25, 7)
    assert np.array_equal(w, 2.0 * np.array([3.0, 4.0, 5.0]))
    assert X[0, 0] == -1.0  # written through to the parent
