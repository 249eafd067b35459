"""PCA as symmetric rank-one factorisation, ``f(w) = 1/4 E||x x^T - w w^T||_F^2``.

Per sample ``f(w; x) = 1/4 (||x||^4 - 2 (x^T w)^2 + ||w||^4)`` with gradient
``||w||^2 w - (x^T w) x``. Minima ``+-sqrt(lambda_1) v_1``; ``w = 0`` is a stationary point
(a saddle: SGD started exactly there never moves).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sgd_dense(X: np.ndarray, w: np.ndarray, u: np.ndarray, etas: np.ndarray) -> None:
    """SGD on rows of X chosen by ``u[steps, batch]``."""
    n, d = X.shape
    steps, batch = u.shape
    proj = np.empty(batch)
    rows = np.empty(batch, np.int64)
    for t in range(steps):
        norm_sq = 0.0
        for j in range(d):
            norm_sq += w[j] * w[j]
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            s = 0.0
            for j in range(d):
                s += X[i, j] * w[j]
            proj[k] = s / batch
        eta = etas[t]
        shrink = 1.0 - eta * norm_sq
        for j in range(d):
            pull = 0.0
            for k in range(batch):
                pull += proj[k] * X[rows[k], j]
            w[j] = shrink * w[j] + eta * pull


@njit(cache=True, nogil=True)
def sgd_stream(mix: np.ndarray, w: np.ndarray, z: np.ndarray, etas: np.ndarray, batch: int) -> None:
    """SGD on fresh samples ``x = z_k @ mix`` (``mix = diag(sqrt(eigs)) V^T``), z ~ N(0, I)."""
    d = w.shape[0]
    steps = z.shape[0]
    x = np.empty((batch, d))
    proj = np.empty(batch)
    for t in range(steps):
        norm_sq = 0.0
        for j in range(d):
            norm_sq += w[j] * w[j]
        for k in range(batch):
            for j in range(d):
                x[k, j] = 0.0
            for m in range(d):
                zm = z[t, k * d + m]
                for j in range(d):
                    x[k, j] += zm * mix[m, j]
            s = 0.0
            for j in range(d):
                s += x[k, j] * w[j]
            proj[k] = s / batch
        eta = etas[t]
        shrink = 1.0 - eta * norm_sq
        for j in range(d):
            pull = 0.0
            for k in range(batch):
                pull += proj[k] * x[k, j]
            w[j] = shrink * w[j] + eta * pull


@njit(cache=True, nogil=True)
def loss_sum_dense(X: np.ndarray, w: np.ndarray, lo: int, hi: int) -> float:
    """``sum_{i in [lo, hi)} 1/4 (||x_i||^4 - 2 (x_i^T w)^2)``; the ``||w||^4`` term is added
    once by the caller."""
    d = X.shape[1]
    total = 0.0
    for i in range(lo, hi):
        s = 0.0
        sq = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
            sq += X[i, j] * X[i, j]
        total += 0.25 * (sq * sq - 2.0 * s * s)
    return total
