"""Issue 4: step-size schedules, schedules firing where declared, single and Hogwild! baselines."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from parsgd.data.shared import LocalArena
from parsgd.data.synthetic import gaussian_linear
from parsgd.engine.rundir import read_trace
from parsgd.engine.runner import run_experiment
from parsgd.rng import StepStream
from parsgd.schedules import AveragingSchedule, StepSize
from tests.helpers import make_config


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (0.1, [0.1, 0.1, 0.1]),
        ({"kind": "inverse", "eta0": 1.0, "t0": 2.0}, [1.0, 1 / 1.5, 0.5]),
        (
            {"kind": "inverse_sqrt", "eta0": 1.0, "t0": 1.0},
            [1.0, 1 / math.sqrt(2), 1 / math.sqrt(3)],
        ),
        ({"kind": "step", "eta0": 1.0, "factor": 0.1, "every": 2}, [1.0, 1.0, 0.1]),
        ({"kind": "cosine", "eta0": 1.0, "min": 0.2}, [1.0, 0.2 + 0.4 * (1 + math.sqrt(0.5)), 0.6]),
    ],
)
def test_step_size_schedules(spec: object, expected: list[float]) -> None:
    config = {"sgd": {"step_size": spec, "steps": 4}}
    if isinstance(spec, dict):
        spec = {"t0": 100.0, "factor": 0.5, "every": 1000, "min": 0.0, **spec}
        config["sgd"]["step_size"] = spec
    assert_allclose(StepSize.from_config(config).values(0, 3), expected, rtol=1e-15)


SCHEDULES = [
    {"averaging__every": 1},
    {"averaging__every": "end"},
    {"averaging__every": "null", "averaging__at": "[5, 17, 100, 333]"},
    {
        "averaging__every": "null",
        "averaging__phases": "[{steps: 100, every: 7}, {steps: 300, every: 50}]",
    },
    {"averaging__every": 30, "averaging__warmup": 12},
    {"averaging__every": 3, "averaging__growth": 1.7},
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: "-".join(map(str, s.values()))[-30:])
@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_schedules_fire_exactly_where_declared(
    tmp_path: Path, schedule: dict, backend: str
) -> None:
    config = make_config(backend=backend, trials=1, eval__every=1, sgd__steps=400, **schedule)
    declared = AveragingSchedule.from_config(config["averaging"]).averaging_steps(400)
    rows = read_trace(run_experiment(config, tmp_path).directory / "trace.csv")
    syncs = np.array([int(r["syncs"]) for r in rows])
    # syncs goes up by one exactly at the declared steps, and the spread is zero right after.
    fired = [
        int(r["step"])
        for r, before in zip(rows[1:], syncs[:-1], strict=True)
        if int(r["syncs"]) == before + 1
    ]
    assert fired == declared.tolist()
    assert np.all(np.diff(syncs) <= 1)
    # Averaging resets the spread: the row after a sync (one step's drift from the average)
    # holds far less than the sync's own row (recorded before averaging, after >= 5 steps).
    variance = {int(r["step"]): float(r["variance"]) for r in rows}
    gaps = np.diff([0, *declared.tolist()])
    long = [int(t) for t, gap in zip(declared, gaps, strict=True) if gap >= 5 and t + 1 in variance]
    if long:
        before = np.mean([variance[t] for t in long])
        after = np.mean([variance[t + 1] for t in long])
        assert after < 0.5 * before, (after, before, long)


def test_single_matches_a_plain_sequential_sgd(tmp_path: Path) -> None:
    config = make_config(method="single", workers=3, trials=1, backend="processes")
    assert config["workers"] == 1 and config["sgd"]["steps"] == 1200  # 3 x 400: equal samples
    rows = read_trace(run_experiment(config, tmp_path).directory / "trace.csv")
    X, y, _ = gaussian_linear(2000, 8, 0.3, config["data"]["seed"], LocalArena())
    u = StepStream(config["seed"], 0, 0, 1).uniforms(0, 1200)
    w = np.zeros(8)
    for t in range(1200):  # the textbook loop
        i = int(u[t, 0] * 2000)
        w = w - 0.05 * (X[i] @ w - y[i]) * X[i]
    w_opt = np.linalg.lstsq(X, y, rcond=None)[0]
    assert int(rows[-1]["samples"]) == 1200 and rows[-1]["syncs"] == "0"
    assert_allclose(float(rows[-1]["dist_opt_sq"]), float((w - w_opt) @ (w - w_opt)), rtol=1e-8)


def _final_dist_sq(config: dict, out: Path) -> float:
    rows = read_trace(run_experiment(config, out).directory / "trace.csv")
    return float(rows[-1]["dist_opt_sq"])


def test_hogwild_workers_update_one_shared_model(tmp_path: Path) -> None:
    """Early in a run (small steps, far from w*) the error shrinks by a known factor per
    update: two Hogwild! workers of N steps each land where one worker of 2N steps does, and
    far below one of N steps, which is where each would be with a private model."""
    common = {"trials": 1, "sgd__step_size": 0.002, "eval__every": 300}
    hog = _final_dist_sq(
        make_config(method="hogwild", workers=2, sgd__steps=300, **common), tmp_path / "h"
    )
    n_steps = _final_dist_sq(
        make_config(method="single", single_budget="steps", sgd__steps=300, **common),
        tmp_path / "n",
    )
    two_n = _final_dist_sq(
        make_config(method="single", workers=1, sgd__steps=600, **common), tmp_path / "2n"
    )
    assert two_n < 0.5 * n_steps  # the regime: twice the updates, a much smaller error
    assert 0.6 * two_n < hog < 1.6 * two_n, (hog, two_n, n_steps)  # private: 3x two_n


def test_hogwild_shares_one_model_and_converges(tmp_path: Path) -> None:
    config = make_config(
        method="hogwild", workers=2, trials=1, sgd__steps=3000, eval__every=500, sgd__step_size=0.02
    )
    result = run_experiment(config, tmp_path)
    rows = read_trace(result.directory / "trace.csv")
    assert float(rows[-1]["subopt"]) < 0.05 * float(rows[0]["subopt"])
    # No spread and no gap are invented for one shared model.
    assert all(r["variance"] == r["gap"] == r["loss_workers_mean"] == "" for r in rows)
    assert all(r["syncs"] == "0" for r in rows)
    record = json.loads((result.directory / "run.json").read_text())
    assert record["samples"] == 3000 * 2
