"""Multinomial logistic (softmax) regression, dense and CSR: ``K`` classes, no hidden layer.

The model is one flat vector, the K x p weight matrix in row-major order (``w[c * p + j]``),
so the engine averages it like any other. With scores ``z = W x``,
``f(w) = 1/n sum_i (logsumexp(z_i) - z_i[y_i]) + l2/2 ||w||^2``: convex, and strongly convex
for ``l2 > 0`` (without it the scores are invariant to adding one vector to every row, so
there is no unique minimiser). There is no bias: the features are centred by default
(``standardize: center_scale``).

Sample k of step t is row ``floor(u[t, k] * n)``, as in the linear loops; a mini-batch's
gradients are all taken at the same ``w``. The per-sample gradient is
``(softmax(z) - e_y) x^T``. The CSR loop keeps ``w = scale * v`` so that the L2 shrink costs
O(1) per step (the trick of ``linear.sgd_csr``). Pure functions: arrays in, arrays out.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from parsgd.problems.kernels.vector import FAST, axpy, dot, scale_axpy, sparse_axpy, sparse_dot

# Rescale v when the lazy scale gets this small, before it loses precision.
_MIN_SCALE = 1e-9


@njit(cache=True, nogil=True)
def _probabilities(z: np.ndarray) -> float:
    """Turn scores ``z`` into softmax probabilities in place; return logsumexp(z)."""
    top = -np.inf
    for c in range(z.shape[0]):
        top = max(top, z[c])
    total = 0.0
    for c in range(z.shape[0]):
        z[c] = math.exp(z[c] - top)
        total += z[c]
    for c in range(z.shape[0]):
        z[c] /= total
    return top + math.log(total)


@njit(cache=True, nogil=True)
def _judge(z: np.ndarray, label: int) -> tuple[float, int]:
    """(cross-entropy of scores ``z`` for ``label``, 1 if their argmax is ``label``);
    ``z`` becomes the probabilities."""
    best = 0
    for c in range(1, z.shape[0]):
        if z[c] > z[best]:
            best = c
    score = z[label]
    return _probabilities(z) - score, 1 if best == label else 0


@njit(cache=True, nogil=True, fastmath=FAST)
def _scores_dense(x: np.ndarray, w: np.ndarray, classes: int, z: np.ndarray) -> None:
    p = x.shape[0]
    for c in range(classes):
        z[c] = dot(x, w[c * p : (c + 1) * p])


@njit(cache=True, nogil=True, fastmath=FAST)
def _scores_csr(
    data: np.ndarray,
    indices: np.ndarray,
    start: int,
    stop: int,
    w: np.ndarray,
    p: int,
    classes: int,
    z: np.ndarray,
) -> None:
    for c in range(classes):
        z[c] = sparse_dot(data, indices, start, stop, w[c * p : (c + 1) * p])


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_dense(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    classes: int,
) -> None:
    """Run ``len(etas)`` SGD steps on rows of X chosen by ``u[steps, batch]``; y: 0..K-1."""
    n, p = X.shape
    steps, batch = u.shape
    grad = np.zeros(w.shape[0])
    z = np.empty(classes)
    for t in range(steps):
        grad[:] = 0.0
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            x = X[i]
            _scores_dense(x, w, classes, z)
            _probabilities(z)
            z[y[i]] -= 1.0  # d loss / d scores
            for c in range(classes):
                axpy(z[c] / batch, x, grad[c * p : (c + 1) * p])
        eta = etas[t]
        scale_axpy(1.0 - eta * l2, w, -eta, grad)


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd_csr(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    p: int,
    y: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    classes: int,
) -> None:
    """``sgd_dense`` for a CSR matrix with ``p`` columns: O(K x non-zeros of the batch)."""
    n = indptr.shape[0] - 1
    steps, batch = u.shape
    rows = np.empty(batch, np.int64)
    resid = np.empty((batch, classes))
    z = np.empty(classes)
    scale = 1.0
    for t in range(steps):
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            rows[k] = i
            _scores_csr(data, indices, indptr[i], indptr[i + 1], w, p, classes, z)
            if l2 != 0.0:
                for c in range(classes):
                    z[c] *= scale
            _probabilities(z)
            z[y[i]] -= 1.0
            for c in range(classes):
                resid[k, c] = z[c] / batch
        eta = etas[t]
        if l2 != 0.0:
            scale *= 1.0 - eta * l2
            step = eta / scale
        else:
            step = eta
        for k in range(batch):
            i = rows[k]
            for c in range(classes):
                r = step * resid[k, c]
                sparse_axpy(-r, data, indices, indptr[i], indptr[i + 1], w[c * p : (c + 1) * p])
        if l2 != 0.0 and abs(scale) < _MIN_SCALE:
            for j in range(w.shape[0]):
                w[j] *= scale
            scale = 1.0
    if scale != 1.0:
        for j in range(w.shape[0]):
            w[j] *= scale


@njit(cache=True, nogil=True)
def evaluate_dense(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, lo: int, hi: int, classes: int
) -> tuple[float, int]:
    """(sum of cross-entropy losses, number of correct argmax predictions) over rows lo..hi-1,
    summed in row order."""
    z = np.empty(classes)
    total = 0.0
    correct = 0
    for i in range(lo, hi):
        _scores_dense(X[i], w, classes, z)
        loss, hit = _judge(z, y[i])
        total += loss
        correct += hit
    return total, correct


@njit(cache=True, nogil=True)
def evaluate_csr(
    data: np.ndarray,
    indices: np.ndarray,
    indptr: np.ndarray,
    p: int,
    y: np.ndarray,
    w: np.ndarray,
    lo: int,
    hi: int,
    classes: int,
) -> tuple[float, int]:
    """``evaluate_dense`` for a CSR matrix with ``p`` columns."""
    z = np.empty(classes)
    total = 0.0
    correct = 0
    for i in range(lo, hi):
        _scores_csr(data, indices, indptr[i], indptr[i + 1], w, p, classes, z)
        loss, hit = _judge(z, y[i])
        total += loss
        correct += hit
    return total, correct
