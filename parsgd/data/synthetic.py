"""Synthetic data sets, generated straight into the memory that will hold them."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from parsgd.rng import DATA_STREAM, generator

# Rows generated per call, so a pool larger than memory's comfort is never doubled.
_CHUNK_ROWS = 1 << 16


class Arena(Protocol):
    shared: bool

    def empty(self, shape: tuple[int, ...], dtype: type = ...) -> np.ndarray: ...

    def zeros(self, shape: tuple[int, ...], dtype: type = ...) -> np.ndarray: ...

    def close(self) -> None: ...


def planted_weights(d: int, seed: int) -> np.ndarray:
    """The generating model ``w_true ~ N(0, I_d / d)``, so ``||w_true||^2`` is about 1."""
    return generator(seed, DATA_STREAM, 0).standard_normal(d) / np.sqrt(d)


def gaussian_linear(
    n: int, d: int, noise: float, seed: int, arena: Arena
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x ~ N(0, I_d)``, ``y = x^T w_true + noise * N(0, 1)``. Returns (X, y, w_true)."""
    w_true = planted_weights(d, seed)
    rng = generator(seed, DATA_STREAM, 1)
    X = arena.empty((n, d))
    y = arena.empty((n,))
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        rng.standard_normal(out=X[lo:hi])
        y[lo:hi] = X[lo:hi] @ w_true + noise * rng.standard_normal(hi - lo)
    return X, y, w_true
