"""Hinge loss (linear SVM) ``max(0, 1 - y z)`` for labels y in {-1, +1}.

Non-smooth at ``y z = 1``: SGD uses the subgradient ``-y x`` where ``y z < 1`` and 0 where
``y z >= 1`` (the subgradient at the kink is taken as 0).
"""

from __future__ import annotations

from numba import njit

from parsgd.problems.kernels.vector import FAST


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def loss(z: float, y: float) -> float:
    return max(0.0, 1.0 - y * z)


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def dloss(z: float, y: float) -> float:
    return -y if y * z < 1.0 else 0.0
