"""Synthetic data sets, generated straight into the memory that will hold them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

    def labels(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return X @ w_true + noise * rng.standard_normal(len(X))

    X, y = _gaussian_rows(n, d, seed, arena, labels)
    return X, y, w_true


def _gaussian_rows(
    n: int,
    d: int,
    seed: int,
    arena: Arena,
    labels: Callable[[np.ndarray, np.random.Generator], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``x ~ N(0, I_d)`` and their labels, chunk by chunk from one stream."""
    rng = generator(seed, DATA_STREAM, 1)
    X = arena.empty((n, d))
    y = arena.empty((n,))
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        rng.standard_normal(out=X[lo:hi])
        y[lo:hi] = labels(X[lo:hi], rng)
    return X, y


def spectrum(
    d: int, eig_max: float, eig_min: float, eigenvalues: Sequence[float] | None
) -> np.ndarray:
    """The listed eigenvalues, or d values from eig_max down to eig_min evenly on a log scale."""
    if eigenvalues is not None:
        return np.asarray(eigenvalues, dtype=np.float64)
    return np.geomspace(eig_max, eig_min, d) if d > 1 else np.array([eig_max])


def random_rotation(d: int, seed: int) -> np.ndarray:
    """A Haar-random orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(generator(seed, DATA_STREAM, 3).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def logistic_planted(
    n: int, d: int, scale: float, seed: int, arena: Arena
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x ~ N(0, I_d)``, ``P(y = +1 | x) = sigmoid(x^T w_true)``, ``||w_true|| ~ scale``.

    Returns (X, y in {-1, +1}, w_true).
    """
    w_true = scale * planted_weights(d, seed)

    def labels(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(X @ w_true)))
        return np.where(rng.random(len(X)) < p, 1.0, -1.0)

    X, y = _gaussian_rows(n, d, seed, arena, labels)
    return X, y, w_true


def pca_spectrum(
    n: int, eigenvalues: np.ndarray, seed: int, arena: Arena
) -> tuple[np.ndarray, np.ndarray]:
    """``x = V diag(sqrt(eigenvalues)) z``, ``z ~ N(0, I)``, V a random rotation.

    The population second moment is ``V diag(eigenvalues) V^T``. Returns (X, V).
    """
    d = eigenvalues.shape[0]
    V = random_rotation(d, seed)
    mix = np.sqrt(eigenvalues)[:, None] * V.T  # row i of X is z_i @ mix
    rng = generator(seed, DATA_STREAM, 1)
    X = arena.empty((n, d))
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        X[lo:hi] = rng.standard_normal((hi - lo, d)) @ mix
    return X, V
