"""Least squares ``f(w) = 1/(2n) sum_i (x_i^T w - y_i)^2 + l2/2 ||w||^2``: compiled kernels.

The kernels trust their inputs (validated upstream), do no I/O and update ``w`` in place.
Sample ``i`` of step ``t`` is ``floor(u[t, k] * n)``: the caller owns the random stream.
Mini-batch gradients are the mean of the per-sample gradients, all taken at the same ``w``.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def sgd_dense(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, u: np.ndarray, etas: np.ndarray, l2: float
) -> None:
    """Run ``len(etas)`` SGD steps on rows of X chosen by the uniforms ``u[steps, batch]``."""
    n, d = X.shape
    steps, batch = u.shape
    rows = np.empty(batch, np.int64)
    resid = np.empty(batch)
    grad = np.zeros(d)
    for t in range(steps):
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            s = 0.0
            for j in range(d):
                s += X[i, j] * w[j]
            resid[k] = (s - y[i]) / batch
        eta = etas[t]
        decay = 1.0 - eta * l2
        if batch == 1:
            i = rows[0]
            r = resid[0]
            for j in range(d):
                w[j] = decay * w[j] - eta * (r * X[i, j])
        else:
            grad[:] = 0.0
            for k in range(batch):
                i = rows[k]
                r = resid[k]
                for j in range(d):
                    grad[j] += r * X[i, j]
            for j in range(d):
                w[j] = decay * w[j] - eta * grad[j]


@njit(cache=True, nogil=True)
def loss_sum_dense(X: np.ndarray, y: np.ndarray, w: np.ndarray, lo: int, hi: int) -> float:
    """``sum_{i in [lo, hi)} 1/2 (x_i^T w - y_i)^2``, summed in row order."""
    d = X.shape[1]
    total = 0.0
    for i in range(lo, hi):
        s = 0.0
        for j in range(d):
            s += X[i, j] * w[j]
        r = s - y[i]
        total += 0.5 * r * r
    return total


@njit(cache=True, nogil=True)
def sgd_stream(
    w_true: np.ndarray,
    noise: float,
    w: np.ndarray,
    z: np.ndarray,
    etas: np.ndarray,
    l2: float,
    batch: int,
) -> None:
    """SGD on fresh Gaussian samples: ``x = z[:d]``, ``y = x^T w_true + noise * z[d]``.

    ``z[t]`` holds the ``batch * (d + 1)`` standard normals of step t.
    """
    d = w.shape[0]
    steps = z.shape[0]
    grad = np.zeros(d)
    for t in range(steps):
        grad[:] = 0.0
        for k in range(batch):
            base = k * (d + 1)
            s = 0.0
            target = 0.0
            for j in range(d):
                s += z[t, base + j] * w[j]
                target += z[t, base + j] * w_true[j]
            r = (s - (target + noise * z[t, base + d])) / batch
            for j in range(d):
                grad[j] += r * z[t, base + j]
        eta = etas[t]
        decay = 1.0 - eta * l2
        for j in range(d):
            w[j] = decay * w[j] - eta * grad[j]
