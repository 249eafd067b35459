"""Compiled SGD loops for linear models, dense and CSR: least squares, logistic, hinge.

The per-sample loss of a linear model depends on ``z = x^T w`` only, so one loop serves all
three; ``code`` picks the loss (a branch the CPU predicts perfectly). Losses and helpers are
inlined into the loops (a call per sample costs as much as a d = 10 row). The losses themselves
live in their own modules. ``f(w) = 1/n sum_i loss(x_i^T w, y_i) + l2/2 ||w||^2``.

Sample k of step t is row ``floor(u[t, k] * n)``. A mini-batch's gradients are all taken at
the same ``w``. The CSR loop keeps ``w = scale * v`` while it runs so that the L2 shrink
costs O(1) per step, not O(d); with ``l2 = 0`` and ``batch = 1`` it does the same floating
point operations as the dense loop on the same numbers (zeros add exactly nothing), so a
sparse file and the same data dense give the same trace up to the order of the dot
product's sum (the dense sum runs in vector lanes, the sparse one in gather order).

The loops compile with ``vector.FAST`` (FMA and reordered sums, never nnan/ninf).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.problems.kernels import hinge, least_squares, logistic
from parsgd.problems.kernels.vector import (
    FAST,
    axpy,
    dot,
    scale_axpy,
    sparse_axpy,
    sparse_dot,
)

LEAST_SQUARES, LOGISTIC, HINGE = 0, 1, 2
CODES = {"least_squares": LEAST_SQUARES, "logistic": LOGISTIC, "hinge": HINGE}
# Rescale v when the lazy scale gets this small, before it loses precision.
_MIN_SCALE = 1e-9


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def sample_loss(code: int, z: float, y: float) -> float:
    if code == LEAST_SQUARES:
        return least_squares.loss(z, y)
    if code == LOGISTIC:
        return logistic.loss(z, y)
    return hinge.loss(z, y)


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def sample_dloss(code: int, z: float, y: float) -> float:
    if code == LEAST_SQUARES:
        return least_squares.dloss(z, y)
    if code == LOGISTIC:
        return logistic.dloss(z, y)
    return hinge.dloss(z, y)


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def dense_step(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, i: int, eta: float, l2: float, code: int
) -> None:
    """One per-sample step on row i: ``w = (1 - eta l2) w - eta loss'(x_i^T w, y_i) x_i``."""
    x = X[i]
    scale_axpy(1.0 - eta * l2, w, -(eta * sample_dloss(code, dot(x, w), y[i])), x)


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_dense(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    code: int,
) -> None:
    """Run ``len(etas)`` SGD steps on rows of X chosen by the uniforms ``u[steps, batch]``."""
    n, d = X.shape
    steps, batch = u.shape
    if batch == 1:  # no buffers: the compiled meetings call this for a few steps at a time
        for t in range(steps):
            dense_step(X, y, w, min(int(u[t, 0] * n), n - 1), etas[t], l2, code)
        return
    rows = np.empty(batch, np.int64)
    resid = np.empty(batch)
    grad = np.zeros(d)
    for t in range(steps):
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            resid[k] = sample_dloss(code, dot(X[i], w), y[i]) / batch
        grad[:] = 0.0
        for k in range(batch):
            axpy(resid[k], X[rows[k]], grad)
        scale_axpy(1.0 - etas[t] * l2, w, -etas[t], grad)


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def _fold_scale(w: np.ndarray, scale: float) -> float:
    """``w *= scale`` (the lazy L2 scale folded into w, if it is not 1); the scale left: 1."""
    if scale != 1.0:
        for j in range(w.shape[0]):
            w[j] *= scale
    return 1.0


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_csr(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    code: int,
) -> None:
    """``sgd_dense`` for a CSR matrix: O(non-zeros of the batch) per step."""
    n = indptr.shape[0] - 1
    steps, batch = u.shape
    if batch == 1:  # no buffers: the compiled meetings call this for a few steps at a time
        scale = 1.0
        for t in range(steps):
            i = min(int(u[t, 0] * n), n - 1)
            lo, hi = indptr[i], indptr[i + 1]
            s = sparse_dot(data, indices, lo, hi, w)
            if l2 != 0.0:
                s *= scale
            r = sample_dloss(code, s, y[i])
            eta = etas[t]
            if l2 != 0.0:
                scale *= 1.0 - eta * l2
                eta /= scale
            sparse_axpy(-(eta * r), data, indices, lo, hi, w)
            if l2 != 0.0 and abs(scale) < _MIN_SCALE:
                scale = _fold_scale(w, scale)
        _fold_scale(w, scale)
        return
    rows = np.empty(batch, np.int64)
    resid = np.empty(batch)
    scale = 1.0
    for t in range(steps):
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            s = sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
            if l2 != 0.0:
                s *= scale
            resid[k] = sample_dloss(code, s, y[i]) / batch
        eta = etas[t]
        if l2 != 0.0:
            scale *= 1.0 - eta * l2
            step = eta / scale
        else:
            step = eta
        for k in range(batch):
            i = rows[k]
            sparse_axpy(-(step * resid[k]), data, indices, indptr[i], indptr[i + 1], w)
        if l2 != 0.0 and abs(scale) < _MIN_SCALE:
            scale = _fold_scale(w, scale)
    _fold_scale(w, scale)


@njit(cache=True, nogil=True, fastmath=FAST)
def loss_sum_dense(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, lo: int, hi: int, code: int
) -> float:
    """``sum_{i in [lo, hi)} loss(x_i^T w, y_i)``, summed in row order."""
    total = 0.0
    for i in range(lo, hi):
        total += sample_loss(code, dot(X[i], w), y[i])
    return total


@njit(cache=True, nogil=True, fastmath=FAST)
def loss_sum_csr(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    lo: int,
    hi: int,
    code: int,
) -> float:
    total = 0.0
    for i in range(lo, hi):
        s = sparse_dot(data, indices, indptr[i], indptr[i + 1], w)
        total += sample_loss(code, s, y[i])
    return total


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_planted_stream(
    w_true: np.ndarray,
    w: np.ndarray,
    z: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    code: int,
    batch: int,
) -> None:
    """SGD on fresh samples of the planted logistic model: ``x = z[t, k d : (k+1) d]`` and
    ``y = +1`` if ``u[t, k] < sigmoid(x^T w_true)``, else -1."""
    d = w.shape[0]
    steps = z.shape[0]
    grad = np.zeros(d)
    for t in range(steps):
        grad[:] = 0.0
        for k in range(batch):
            x = z[t, k * d : (k + 1) * d]
            margin = dot(x, w_true)
            y = 1.0 if u[t, k] * (1.0 + np.exp(-margin)) < 1.0 else -1.0
            axpy(sample_dloss(code, dot(x, w), y) / batch, x, grad)
        scale_axpy(1.0 - etas[t] * l2, w, -etas[t], grad)
