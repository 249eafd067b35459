"""PCA as symmetric rank-one factorisation, ``f(w) = 1/4 E||x x^T - w w^T||_F^2``.

Per sample ``f(w; x) = 1/4 (||x||^4 - 2 (x^T w)^2 + ||w||^4)`` with gradient
``||w||^2 w - (x^T w) x``. Minima ``+-sqrt(lambda_1) v_1``; ``w = 0`` is a stationary point
(a saddle: SGD started exactly there never moves).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.problems.kernels.vector import FAST, axpy, dot, scale_axpy


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_dense(X: np.ndarray, w: np.ndarray, u: np.ndarray, etas: np.ndarray) -> None:
    """SGD on rows of X chosen by ``u[steps, batch]``."""
    n, d = X.shape
    steps, batch = u.shape
    if batch == 1:  # no buffers: the compiled meetings call this for a few steps at a time
        for t in range(steps):
            norm_sq = dot(w, w)
            x = X[min(int(u[t, 0] * n), n - 1)]
            eta = etas[t]
            scale_axpy(1.0 - eta * norm_sq, w, eta * dot(x, w), x)
        return
    proj = np.empty(batch)
    rows = np.empty(batch, np.int64)
    pull = np.empty(d)
    for t in range(steps):
        norm_sq = dot(w, w)
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            proj[k] = dot(X[i], w) / batch
        eta = etas[t]
        pull[:] = 0.0
        for k in range(batch):
            axpy(proj[k], X[rows[k]], pull)
        scale_axpy(1.0 - eta * norm_sq, w, eta, pull)


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_stream(mix: np.ndarray, w: np.ndarray, z: np.ndarray, etas: np.ndarray, batch: int) -> None:
    """SGD on fresh samples ``x = z_k @ mix`` (``mix = diag(sqrt(eigs)) V^T``), z ~ N(0, I)."""
    d = w.shape[0]
    steps = z.shape[0]
    x = np.empty((batch, d))
    proj = np.empty(batch)
    pull = np.empty(d)
    for t in range(steps):
        norm_sq = dot(w, w)
        for k in range(batch):
            x[k, :] = 0.0
            for m in range(d):
                axpy(z[t, k * d + m], mix[m], x[k])
            proj[k] = dot(x[k], w) / batch
        eta = etas[t]
        pull[:] = 0.0
        for k in range(batch):
            axpy(proj[k], x[k], pull)
        scale_axpy(1.0 - eta * norm_sq, w, eta, pull)


@njit(cache=True, nogil=True, fastmath=FAST)
def loss_sum_dense(X: np.ndarray, w: np.ndarray, lo: int, hi: int) -> float:
    """``sum_{i in [lo, hi)} 1/4 (||x_i||^4 - 2 (x_i^T w)^2)``; the ``||w||^4`` term is added
    once by the caller."""
    total = 0.0
    for i in range(lo, hi):
        s = dot(X[i], w)
        sq = dot(X[i], X[i])
        total += 0.25 * (sq * sq - 2.0 * s * s)
    return total
