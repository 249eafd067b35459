"""Positional random draws, and the fixed-order average the backends share."""

from __future__ import annotations

import numpy as np

from parsgd.engine.meetings import average_rows
from parsgd.rng import StepStream, normals_from_uniforms


def test_draws_do_not_depend_on_how_steps_are_cut() -> None:
    stream = StepStream(seed=5, trial=2, worker=1, per_step=3)
    whole = stream.uniforms(0, 100)
    parts = np.concatenate(
        [stream.uniforms(0, 7), stream.uniforms(7, 61), stream.uniforms(61, 100)]
    )
    assert np.array_equal(whole, parts)
    assert whole.shape == (100, 3) and whole.min() >= 0 and whole.max() < 1


def test_streams_differ_by_worker_and_trial() -> None:
    a = StepStream(0, 0, 0, 2).uniforms(0, 5)
    assert not np.array_equal(a, StepStream(0, 0, 1, 2).uniforms(0, 5))
    assert not np.array_equal(a, StepStream(0, 1, 0, 2).uniforms(0, 5))


def test_box_muller_normals_are_standard() -> None:
    u = np.random.default_rng(3).random((200_000, 2))
    z = normals_from_uniforms(u, 2).ravel()
    # 400k draws: the standard errors of the mean and variance are about 0.0016 and 0.0022.
    assert abs(z.mean()) < 0.01 and abs(z.var() - 1) < 0.01


def test_average_of_rank_rows_is_the_mean() -> None:
    """Worker r writes r: every column's average is (M-1)/2, whatever the grouping."""
    M, d = 6, 13
    W = np.repeat(np.arange(M, dtype=float)[:, None], d, axis=1)
    for group in (1, 2, 3, 6):
        out = np.zeros(d)
        assert average_rows(W, 0, M, group, out, np.zeros(d))
        assert np.array_equal(out, np.full(d, (M - 1) / 2))
