"""A one-hidden-layer network: ``softmax(W2 tanh(W1 x + b1) + b2)``, cross-entropy loss.

The model is one flat vector (so the engine averages it like any other):
``[W1 (hidden x p, row-major), b1 (hidden), W2 (classes x hidden), b2 (classes)]``.
``f(w) = 1/n sum_i -log softmax(o(x_i))[y_i] + l2/2 ||w||^2``. Per-sample gradients by hand
(backpropagation through two layers); a mini-batch's gradients are all taken at the same w.

All-zero weights are a symmetric saddle: every hidden unit is the same, the output weights
see zero activations and stay zero, and only the output biases learn.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from parsgd.problems.kernels.vector import FAST, axpy, dot, scale_axpy


def n_params(p: int, hidden: int, classes: int) -> int:
    return hidden * p + hidden + classes * hidden + classes


def init_std(p: int, hidden: int, classes: int) -> np.ndarray:
    """Per-parameter scale of a random start: 1/sqrt(fan-in) for weights, 0 for biases."""
    std = np.zeros(n_params(p, hidden, classes))
    std[: hidden * p] = 1.0 / math.sqrt(p)
    start = hidden * p + hidden
    std[start : start + classes * hidden] = 1.0 / math.sqrt(hidden)
    return std


@njit(cache=True, nogil=True, fastmath=FAST)
def _forward(
    x: np.ndarray, w: np.ndarray, hidden: int, classes: int, h: np.ndarray, o: np.ndarray
) -> float:
    """Fill hidden activations ``h`` and softmax probabilities ``o``; return log-sum-exp."""
    p = x.shape[0]
    b1 = hidden * p
    w2 = b1 + hidden
    b2 = w2 + classes * hidden
    for a in range(hidden):
        h[a] = math.tanh(w[b1 + a] + dot(w[a * p : (a + 1) * p], x))
    top = -np.inf
    for c in range(classes):
        row = w2 + c * hidden
        s = w[b2 + c] + dot(w[row : row + hidden], h)
        o[c] = s
        top = max(top, s)
    total = 0.0
    for c in range(classes):
        o[c] = math.exp(o[c] - top)
        total += o[c]
    for c in range(classes):
        o[c] /= total
    return top + math.log(total)


@njit(cache=True, nogil=True, fastmath=FAST)
def _sample_loss(o: np.ndarray, label: int) -> float:
    return -math.log(max(o[label], 1e-300))


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd(
    X: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    l2: float,
    hidden: int,
    classes: int,
) -> None:
    """SGD on rows of X chosen by ``u[steps, batch]``; ``y`` holds class ids 0..classes-1."""
    n, p = X.shape
    steps, batch = u.shape
    b1 = hidden * p
    w2 = b1 + hidden
    b2 = w2 + classes * hidden
    grad = np.zeros(w.shape[0])
    h = np.empty(hidden)
    o = np.empty(classes)
    dh = np.empty(hidden)
    for t in range(steps):
        grad[:] = 0.0
        for k in range(batch):
            i = min(int(u[t, k] * n), n - 1)
            x = X[i]
            _forward(x, w, hidden, classes, h, o)
            o[y[i]] -= 1.0  # d loss / d logits
            for a in range(hidden):
                dh[a] = 0.0
            for c in range(classes):
                oc = o[c] / batch
                grad[b2 + c] += oc
                row = w2 + c * hidden
                axpy(oc, h, grad[row : row + hidden])
                axpy(oc, w[row : row + hidden], dh)
            for a in range(hidden):
                da = dh[a] * (1.0 - h[a] * h[a])
                grad[b1 + a] += da
                axpy(da, x, grad[a * p : (a + 1) * p])
        scale_axpy(1.0 - etas[t] * l2, w, -etas[t], grad)


@njit(cache=True, nogil=True, fastmath=FAST)
def evaluate(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, lo: int, hi: int, hidden: int, classes: int
) -> tuple[float, int]:
    """(sum of cross-entropy losses, number of correct argmax predictions) over rows lo..hi-1."""
    h = np.empty(hidden)
    o = np.empty(classes)
    total = 0.0
    correct = 0
    for i in range(lo, hi):
        _forward(X[i], w, hidden, classes, h, o)
        total += _sample_loss(o, y[i])
        best = 0
        for c in range(1, classes):
            if o[c] > o[best]:
                best = c
        if best == y[i]:
            correct += 1
    return total, correct
