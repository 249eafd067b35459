"""A quadratic with a controlled noise envelope, ``f(w) = 1/2 (w - w*)^T A (w - w*)``.

``A = diag(eigs)``. The stochastic gradient of one sample is

    g = (A + sqrt(beta) Z) (w - w*) + sigma xi,

Z a d x d matrix and xi a d-vector of fresh independent standard normals. For e = w - w*,
``E g = A e`` and ``Var g = E||g - A e||^2 = d (beta ||e||^2 + sigma^2)``: PAPER.md's envelope
with growth ``d beta`` and floor ``d sigma^2`` (the 1-D case of PAPER.md (ii) for d = 1).
With ``beta = 0`` Z is not drawn at all and each step is an affine map of w.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.problems.kernels.vector import FAST, axpy, dot


def normals_per_sample(d: int, beta: float) -> int:
    """Z (row-major, only if beta > 0) then xi."""
    return (d * d if beta > 0.0 else 0) + d


@njit(cache=True, nogil=True, fastmath=FAST)
def sgd(
    eigs: np.ndarray,
    w_opt: np.ndarray,
    w: np.ndarray,
    z: np.ndarray,
    etas: np.ndarray,
    sqrt_beta: float,
    sigma: float,
    batch: int,
) -> None:
    """``len(etas)`` steps; ``z[t]`` holds the normals of step t, sample after sample."""
    d = w.shape[0]
    steps = z.shape[0]
    has_z = sqrt_beta > 0.0
    per = d * d + d if has_z else d
    e = np.empty(d)
    g = np.empty(d)
    for t in range(steps):
        for i in range(d):
            e[i] = w[i] - w_opt[i]
            g[i] = 0.0
        for k in range(batch):
            base = k * per
            xi = base + d * d if has_z else base
            for i in range(d):
                gi = eigs[i] * e[i] + sigma * z[t, xi + i]
                if has_z:
                    row = base + i * d
                    gi += sqrt_beta * dot(z[t, row : row + d], e)
                g[i] += gi
        axpy(-(etas[t] / batch), g, w)
