"""Logistic loss ``log(1 + exp(-y z))`` for labels y in {-1, +1} and prediction ``z = x^T w``.

Labels in {0, 1} are mapped to {-1, +1} when the data is loaded. Both functions are written
so that no exp overflows for large margins.
"""

from __future__ import annotations

import math

from numba import njit

from parsgd.problems.kernels.vector import FAST


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def loss(z: float, y: float) -> float:
    m = y * z
    if m > 0.0:
        return math.log1p(math.exp(-m))
    return -m + math.log1p(math.exp(m))


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def dloss(z: float, y: float) -> float:
    """``-y sigmoid(-y z)``."""
    m = y * z
    if m > 0.0:
        e = math.exp(-m)
        return -y * e / (1.0 + e)
    return -y / (1.0 + math.exp(m))
