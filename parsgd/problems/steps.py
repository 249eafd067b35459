"""The compiled step of every objective, behind one call the compiled meetings can make.

A problem hands the engine a ``StepKernel``: which loop (``kind``), its arrays packed in one
fixed shape (``Pack``), and how a block of uniforms becomes the loop's inputs. One
dispatching function, ``step``, calls the problem's loop in ``parsgd.problems.kernels``; the
meetings take it with the pack, so local steps and meetings alternate in compiled code for
every objective.

Why a dispatch on ``kind`` and not a function argument: numba can take an ``@njit`` function
as an argument, but such a caller misses its on-disk cache in every new process (its type
holds the function object), which would put seconds of compilation into every run's start.
A fixed pack keeps one cached signature per data layout.

Adding an objective: write its loop in ``kernels/``, give it a kind below, a branch in
``step``, and a ``step_kernel`` on its Problem that packs its arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from parsgd.problems.kernels import least_squares, linear, mlp, pca, quadratic

DENSE_LINEAR, CSR_LINEAR, GAUSSIAN_STREAM, PLANTED_STREAM = range(4)
PCA_POOL, PCA_STREAM, MLP, QUADRATIC = range(4, 8)

# (matrix, vector a, vector b, indices, int vector, float scalars, int scalars)
Pack = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def pack(
    matrix: np.ndarray | None = None,
    a: np.ndarray | None = None,
    b: np.ndarray | None = None,
    indices: np.ndarray | None = None,
    ints: np.ndarray | None = None,
    floats: tuple[float, ...] = (),
    scalars: tuple[int, ...] = (),
) -> Pack:
    """A problem's arrays in the fixed shape ``step`` takes; absent ones are empty."""
    return (
        np.empty((0, 0)) if matrix is None else matrix,
        np.empty(0) if a is None else a,
        np.empty(0) if b is None else b,
        np.empty(0, np.int64) if indices is None else indices,
        np.empty(0, np.int64) if ints is None else ints,
        np.array(floats, dtype=np.float64),
        np.array(scalars, dtype=np.int64),
    )


def _identity(uniforms: np.ndarray) -> np.ndarray:
    return uniforms


@dataclass(frozen=True)
class StepKernel:
    """What the compiled meetings need from a problem to run its local steps."""

    kind: int
    pack: Pack
    # Uniforms of a block of steps (steps x uniforms_per_step) -> the loop's inputs, float64
    # C-contiguous, one row per step (vectorised numpy: Box-Muller for the streams).
    prepare: Callable[[np.ndarray], np.ndarray] = _identity


@njit(cache=True, nogil=True)
def step(kind: int, data: Pack, w: np.ndarray, x: np.ndarray, etas: np.ndarray) -> None:
    """Run ``len(etas)`` steps of loop ``kind`` on ``w``; ``x`` holds the prepared inputs."""
    matrix, a, b, indices, ints, floats, scalars = data
    if kind == DENSE_LINEAR:
        linear.sgd_dense(matrix, a, w, x, etas, floats[0], scalars[0])
    elif kind == CSR_LINEAR:
        linear.sgd_csr(a, indices, ints, b, w, x, etas, floats[0], scalars[0])
    elif kind == GAUSSIAN_STREAM:
        least_squares.sgd_stream(a, floats[0], w, x, etas, floats[1], scalars[0])
    elif kind == PLANTED_STREAM:
        normals = scalars[2]
        linear.sgd_planted_stream(
            a, w, x[:, :normals], x[:, normals:], etas, floats[0], scalars[0], scalars[1]
        )
    elif kind == PCA_POOL:
        pca.sgd_dense(matrix, w, x, etas)
    elif kind == PCA_STREAM:
        pca.sgd_stream(matrix, w, x, etas, scalars[0])
    elif kind == MLP:
        mlp.sgd(matrix, ints, w, x, etas, floats[0], scalars[0], scalars[1])
    elif kind == QUADRATIC:
        quadratic.sgd(a, b, w, x, etas, floats[0], floats[1], scalars[0])
