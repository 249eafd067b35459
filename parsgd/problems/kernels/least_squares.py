"""Least squares ``f(w) = 1/(2n) sum_i (x_i^T w - y_i)^2 + l2/2 ||w||^2``: compiled kernels.

The per-sample loss and its derivative (the pool loops, dense and CSR, are shared with the
other linear models in ``linear.py``) and the loop on fresh Gaussian samples. Kernels trust
their inputs (validated upstream), do no I/O and update ``w`` in place. Mini-batch gradients
are the mean of the per-sample gradients, all taken at the same ``w``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.problems.kernels.vector import FAST, axpy, dot, scale_axpy


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def loss(z: float, y: float) -> float:
    """Loss of one sample with prediction ``z = x^T w`` and target ``y``."""
    r = z - y
    return 0.5 * r * r


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def dloss(z: float, y: float) -> float:
    """Derivative of ``loss`` in z: the gradient of the sample is ``dloss * x``."""
    return z - y


@njit(cache=True, nogil=True, fastmath=FAST)
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
            x = z[t, base : base + d]
            target = dot(x, w_true) + noise * z[t, base + d]
            axpy((dot(x, w) - target) / batch, x, grad)
        scale_axpy(1.0 - etas[t] * l2, w, -etas[t], grad)
