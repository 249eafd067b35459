"""Compiled kernels against deliberately naive reference loops, and positional random draws."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from parsgd.engine.team import column_mean
from parsgd.objectives.least_squares import loss_sum_dense, sgd_dense, sgd_stream
from parsgd.rng import StepStream, normals_from_uniforms


def _reference_sgd(X, y, w, u, etas, l2):
    n = X.shape[0]
    w = w.copy()
    for t in range(u.shape[0]):
        rows = [min(int(v * n), n - 1) for v in u[t]]
        grad = sum((X[i] @ w - y[i]) * X[i] for i in rows) / len(rows) + l2 * w
        w = w - etas[t] * grad
    return w


@pytest.mark.parametrize(("batch", "l2"), [(1, 0.0), (1, 0.1), (4, 0.0), (7, 0.05)])
def test_sgd_dense_matches_reference(batch: int, l2: float) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 6)), rng.standard_normal(50)
    u, etas = rng.random((30, batch)), np.linspace(0.05, 0.01, 30)
    w0 = rng.standard_normal(6)
    w = w0.copy()
    sgd_dense(X, y, w, u, etas, l2)
    assert_allclose(w, _reference_sgd(X, y, w0, u, etas, l2), rtol=1e-12, atol=1e-14)


def test_loss_sum_dense_matches_reference() -> None:
    rng = np.random.default_rng(1)
    X, y, w = rng.standard_normal((40, 5)), rng.standard_normal(40), rng.standard_normal(5)
    expected = 0.5 * np.sum((X[10:30] @ w - y[10:30]) ** 2)
    assert_allclose(loss_sum_dense(X, y, w, 10, 30), expected, rtol=1e-12)


def test_sgd_stream_matches_reference() -> None:
    rng = np.random.default_rng(2)
    d, batch, steps = 4, 3, 20
    w_true, noise = rng.standard_normal(d), 0.3
    z = rng.standard_normal((steps, batch * (d + 1)))
    etas = np.full(steps, 0.05)
    w = np.zeros(d)
    sgd_stream(w_true, noise, w, z, etas, 0.0, batch)
    ref = np.zeros(d)
    for t in range(steps):
        grad = np.zeros(d)
        for k in range(batch):
            x = z[t, k * (d + 1) : k * (d + 1) + d]
            y = x @ w_true + noise * z[t, k * (d + 1) + d]
            grad += (x @ ref - y) * x
        ref = ref - etas[t] * grad / batch
    assert_allclose(w, ref, rtol=1e-12, atol=1e-14)


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


def test_column_mean_of_rank_rows_is_the_mean() -> None:
    """Worker r writes r: every column's average is (M-1)/2, whatever the chunking."""
    M, d = 5, 13
    W = np.repeat(np.arange(M, dtype=float)[:, None], d, axis=1)
    out = np.zeros(d)
    for lo, hi in [(0, 4), (4, 9), (9, 13)]:
        column_mean(W, out, lo, hi)
    assert np.array_equal(out, np.full(d, (M - 1) / 2))
