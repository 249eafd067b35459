"""The compiled averaging rounds give the Python path's numbers, stop, diverge and abort alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, write_config

from parsgd.engine import fastpath
from parsgd.problems.kernels.linear import LEAST_SQUARES
from tests.helpers import numbers


@pytest.mark.parametrize("every", [1, 3])
def test_fast_path_matches_python_path_bit_for_bit(tmp_path: Path, every: int) -> None:
    config = write_config(tmp_path / "c.yaml", averaging={"every": every}, checkpoint={"every": 7})
    traces = []
    for backend, off in (("serial", "1"), ("serial", ""), ("processes", "")):
        out = tmp_path / f"{backend}{off}"
        done = run_cli(
            "run", str(config), "--out", str(out), "--set", f"backend={backend}",
            env={"PARSGD_NO_FASTPATH": off},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        traces.append(numbers(out / "t"))
    assert traces[0] == traces[1] == traces[2]


def test_divergence_stops_at_the_same_meeting(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", averaging={"every": 1}, sgd={"step_size": 5.0})
    reasons = []
    for off in ("1", ""):
        out = tmp_path / f"run{off}"
        done = run_cli("run", str(config), "--out", str(out), env={"PARSGD_NO_FASTPATH": off})
        assert done.returncode == 3, done.stderr
        reasons.append(json.loads((out / "t" / "run.json").read_text())["reason"])
    assert reasons[0] == reasons[1]


def _block(M: int, barrier: bool, control: np.ndarray, arrive: np.ndarray) -> tuple:
    d, n, steps = 4, 10, 5
    X, y = np.ones((n, d)), np.ones(n)
    W, avg = np.zeros((M, d)), np.zeros(d)
    chunks = np.array([(r * d // M, (r + 1) * d // M) for r in range(M)], dtype=np.int64)
    ranks = np.arange(1 if barrier else M, dtype=np.int64)
    u = np.full((len(ranks), steps, 1), 0.5)
    return fastpath.rounds(
        X, y, 0.0, LEAST_SQUARES, W, avg, np.zeros(M, np.int64), arrive, control,
        np.zeros(M, np.int64), ranks, chunks, u, np.full(steps, 0.1), 0,
        np.arange(1, steps + 1), barrier, 0, 0, np.zeros(2),
    )  # fmt: skip


def test_stop_request_ends_the_block_after_one_meeting() -> None:
    control = np.zeros(4, np.int64)
    control[0] = 1  # STOP_REQUEST
    status, count, decision, _ = _block(2, False, control, np.zeros(2, np.int64))
    assert (status, count, decision) == (fastpath.OK, 1, 2)


def test_barrier_gives_up_on_abort() -> None:
    control = np.zeros(4, np.int64)
    control[1] = 1  # ABORT; rank 1 never arrives
    status, count, _, _ = _block(2, True, control, np.zeros(2, np.int64))
    assert (status, count) == (fastpath.ABORTED, 0)


def test_constants_mirror_the_team_module() -> None:
    from parsgd.engine import team

    assert (fastpath._STOP_REQUEST, fastpath._ABORT) == (team.STOP_REQUEST, team.ABORT)
    assert (fastpath._NONFINITE, fastpath._STOP) == (team.NONFINITE, team.STOP)


@pytest.mark.parametrize(("M", "d"), [(1, 5), (2, 7), (3, 1100), (5, 3)])
def test_average_chunk_matches_column_mean_bit_for_bit(M: int, d: int) -> None:
    from parsgd.engine.team import column_mean

    W = np.random.default_rng(M * d).standard_normal((M, d)) * 1e3
    expected, got = np.zeros(d), np.zeros(d)
    column_mean(W, expected, 1 % d, d)
    adopted = W.copy()
    assert fastpath.average_chunk(adopted, got, 1 % d, d, True)
    assert np.array_equal(got, expected)
    assert np.array_equal(adopted[:, 1 % d :], np.tile(expected[1 % d :], (M, 1)))
    W[-1, -1] = np.inf
    assert not fastpath.average_chunk(W, got, 0, d)
