"""Monte Carlo against the closed form of PAPER.md (iii): least squares, Gaussian features.

With fresh samples every step (``data.stream: true``) the recursion is exact, so the mean of
``dist_opt_sq`` over K independent trials must sit within z standard errors of it. The standard
error is estimated from the K trials themselves; z = 4 makes a false alarm a 1-in-15,000 event
per comparison.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from parsgd.engine.collector import read_trace
from parsgd.engine.runner import run_experiment
from parsgd.problem import GaussianStream
from parsgd.rng import DATA_STREAM, generator
from parsgd.schedules import AveragingSchedule
from parsgd.theory import gaussian_least_squares_dist_sq
from tests.helpers import make_config

Z = 4.0
TRIALS = 400
D, ALPHA = 20, 0.06  # the schedules' predictions differ by 25%, about 15 standard errors


@pytest.mark.slow
@pytest.mark.parametrize("every", [1, 10, "end"])
def test_mean_distance_matches_closed_form(tmp_path: Path, every: int | str) -> None:
    config = make_config(
        trials=TRIALS,
        workers=2,
        data__stream="true",
        data__d=D,
        data__noise=0.5,
        sgd__steps=120,
        sgd__step_size=ALPHA,
        averaging__every=every,
        eval__every=40,
    )
    result = run_experiment(config, tmp_path)
    assert result.status == "completed"
    rows = read_trace(result.directory / "trace.csv")
    steps = sorted({int(r["step"]) for r in rows})
    by_step = {
        s: np.array([float(r["dist_opt_sq"]) for r in rows if int(r["step"]) == s]) for s in steps
    }
    w_true = generator(config["data"]["seed"], DATA_STREAM, 0).standard_normal(D) / np.sqrt(D)
    assert np.array_equal(GaussianStream(w_true, 0.5, 0.0, 1).w_opt, w_true)

    def theory(schedule: int | str) -> np.ndarray:
        return gaussian_least_squares_dist_sq(
            d=D,
            noise_std=0.5,
            step_size=ALPHA,
            batch_size=1,
            workers=2,
            initial_dist_sq=float(w_true @ w_true),
            averaging_steps=AveragingSchedule(every=schedule).averaging_steps(120),
            at_steps=np.array(steps),
        )

    expected = theory(every)
    for step, value in zip(steps[1:], expected[1:], strict=True):
        sample = by_step[step]
        assert len(sample) == TRIALS
        stderr = sample.std(ddof=1) / np.sqrt(TRIALS)
        assert abs(sample.mean() - value) < Z * stderr, (step, sample.mean(), value, stderr)
    # The check has power: the other schedules' predictions are rejected at the last step.
    final = by_step[steps[-1]]
    stderr = final.std(ddof=1) / np.sqrt(TRIALS)
    for other in {1, 10, "end"} - {every}:
        assert abs(final.mean() - theory(other)[-1]) > Z * stderr, other


def test_frequent_averaging_wins_in_the_closed_form() -> None:
    """PAPER.md (ii): the error is monotone in H and the gap grows with the envelope."""

    def final(every: int | str) -> float:
        steps = AveragingSchedule(every=every).averaging_steps(200)
        return float(
            gaussian_least_squares_dist_sq(
                d=10,
                noise_std=0.5,
                step_size=0.05,
                batch_size=1,
                workers=4,
                initial_dist_sq=1.0,
                averaging_steps=steps,
                at_steps=np.array([200]),
            )[0]
        )

    values = [final(h) for h in (1, 10, 100, "end")]
    assert values == sorted(values)
