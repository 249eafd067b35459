"""The compiled step of every objective, behind one call the compiled meetings can make.

A problem hands the engine a ``StepKernel``: its arrays and constants as a small NamedTuple
of its own type (one class per loop, below), and how a block of uniforms becomes the loop's
inputs. ``step(data, w, x, etas)`` runs the loop that belongs to ``type(data)``; the meetings
call it, so local steps and meetings alternate in compiled code for every objective.

Why the loop is chosen by the pack's type: numba compiles ``step`` (and every caller, the
meetings included) once per argument type, and picks the loop while typing, so a run
compiles, caches and loads only its own objective's loop. A dispatch on a runtime ``kind``
integer would type and compile every loop into every caller: on a fresh checkout that was
30 s and some hundreds of MiB before the first step. A loop passed as a function argument
would miss numba's on-disk cache in every new process (its type holds the function object).

Adding an objective: write its loop in ``kernels/``, a NamedTuple here with the arrays and
constants it needs, a branch in ``_LOOPS``, and a ``step_kernel`` on its Problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numba import njit
from numba.extending import overload

from parsgd.problems.kernels import least_squares, linear, mlp, pca, quadratic, softmax
from parsgd.views import prefetch


class DenseLinear(NamedTuple):
    """A linear model (``code``: least squares, logistic or hinge) on a dense pool."""

    X: np.ndarray
    y: np.ndarray
    l2: float
    code: int


class CsrLinear(NamedTuple):
    """``DenseLinear`` on a CSR pool (values, indices, indptr)."""

    values: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    y: np.ndarray
    l2: float
    code: int


class GaussianStream(NamedTuple):
    """Least squares on fresh Gaussian samples around ``w_true``."""

    w_true: np.ndarray
    noise: float
    l2: float
    batch: int


class PlantedStream(NamedTuple):
    """The planted logistic model; the first ``normals`` inputs of a step are x's normals."""

    w_true: np.ndarray
    l2: float
    code: int
    batch: int
    normals: int


class PcaPool(NamedTuple):
    X: np.ndarray


class PcaStream(NamedTuple):
    mix: np.ndarray
    batch: int


class Mlp(NamedTuple):
    X: np.ndarray
    y: np.ndarray
    l2: float
    hidden: int
    classes: int


class Quadratic(NamedTuple):
    """Row ``rank % rows`` of ``curvatures`` and ``centers`` is a worker's own quadratic (one
    row: every worker has the same)."""

    curvatures: np.ndarray
    centers: np.ndarray
    sqrt_beta: float
    sigma: float
    batch: int


class SoftmaxDense(NamedTuple):
    X: np.ndarray
    y: np.ndarray
    l2: float
    classes: int


class SoftmaxCsr(NamedTuple):
    values: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    p: int
    y: np.ndarray
    l2: float
    classes: int


Pack = (
    DenseLinear | CsrLinear | GaussianStream | PlantedStream | PcaPool | PcaStream | Mlp
    | Quadratic | SoftmaxDense | SoftmaxCsr
)  # fmt: skip


# The loops, as numba compiles them into ``step``: plain functions, typed in the caller. Their
# parameters are spelled exactly as ``_typed``'s, annotations too: numba checks they match.
def _dense_linear(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    linear.sgd_dense(data.X, data.y, w, x, etas, data.l2, data.code)


def _csr_linear(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    linear.sgd_csr(data.values, data.indices, data.indptr, data.y, w, x, etas, data.l2, data.code)


def _gaussian_stream(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    least_squares.sgd_stream(data.w_true, data.noise, w, x, etas, data.l2, data.batch)


def _planted_stream(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    z, u = x[:, : data.normals], x[:, data.normals :]
    linear.sgd_planted_stream(data.w_true, w, z, u, etas, data.l2, data.code, data.batch)


def _pca_pool(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    pca.sgd_dense(data.X, w, x, etas)


def _pca_stream(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    pca.sgd_stream(data.mix, w, x, etas, data.batch)


def _mlp(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    mlp.sgd(data.X, data.y, w, x, etas, data.l2, data.hidden, data.classes)


def _quadratic(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    row = rank % data.curvatures.shape[0]
    eigs, center = data.curvatures[row], data.centers[row]
    quadratic.sgd(eigs, center, w, x, etas, data.sqrt_beta, data.sigma, data.batch)


def _softmax_dense(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    softmax.sgd_dense(data.X, data.y, w, x, etas, data.l2, data.classes)


def _softmax_csr(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> None:
    m = data
    softmax.sgd_csr(m.values, m.indices, m.indptr, m.p, m.y, w, x, etas, m.l2, m.classes)


_LOOPS: dict[type, Callable[..., None]] = {
    DenseLinear: _dense_linear,
    CsrLinear: _csr_linear,
    GaussianStream: _gaussian_stream,
    PlantedStream: _planted_stream,
    PcaPool: _pca_pool,
    PcaStream: _pca_stream,
    Mlp: _mlp,
    Quadratic: _quadratic,
    SoftmaxDense: _softmax_dense,
    SoftmaxCsr: _softmax_csr,
}


def _loop(data: Pack, rank: int, w: np.ndarray, x: np.ndarray, etas: np.ndarray) -> None:
    """Stands for the loop of ``type(data)``; only compiled code calls it (see ``_typed``)."""
    raise NotImplementedError("compiled code only: call step()")


@overload(_loop, jit_options={"nogil": True}, inline="always")
def _typed(data: Any, rank: Any, w: Any, x: Any, etas: Any) -> Callable[..., None]:
    """Pick the loop while typing: ``data`` is a numba NamedTuple type here."""
    return _LOOPS[data.instance_class]


@njit(cache=True, nogil=True, inline="always")
def step(data: Pack, rank: int, w: np.ndarray, x: np.ndarray, etas: np.ndarray) -> None:
    """Run ``len(etas)`` steps of ``type(data)``'s loop on ``w``; ``x`` holds the inputs.

    ``rank`` is the stepping worker's global number, for objectives whose workers differ
    (the heterogeneous quadratic); the other loops ignore it.
    """
    _loop(data, rank, w, x, etas)


@njit(cache=True, nogil=True, inline="always")
def advance(
    data: Pack,
    rank: int,
    row: np.ndarray,
    x: np.ndarray,
    etas: np.ndarray,
    beta: float,
    nesterov: bool,
) -> None:
    """The local steps of worker ``rank``'s model-table row, with or without momentum.

    ``beta == 0``: the row is the model w and this is ``step`` itself (plain SGD, the same
    bits as ever). ``beta > 0``: the row is ``[w, v]`` (2d entries), v the momentum buffer,
    and each step takes the full stochastic gradient g (the loss's and L2's) from one step
    of the objective's own loop with unit step size from a copy of w, ``g = w - step_1(w)``
    (every loop's update is ``w - eta g`` with g taken at the step's start, so this is its
    g for any objective), then does heavy ball, ``v = beta v + g; w -= eta v``, or
    Nesterov's form ``v = beta v + g; w -= eta (g + beta v)`` (PyTorch's convention). The
    probe costs one copy of w per step, so sparse rows lose their O(non-zeros) steps.
    """
    if beta == 0.0:
        step(data, rank, row, x, etas)
    else:
        d = row.shape[0] // 2
        _momentum_steps(data, rank, row[:d], row[d:], x, etas, beta, nesterov)


@njit(cache=True, nogil=True)
def _momentum_steps(
    data: Pack, rank: int, w: np.ndarray, v: np.ndarray, x: np.ndarray, etas: np.ndarray,
    beta: float, nesterov: bool,
) -> None:  # fmt: skip
    """``advance`` with momentum, on the model w and its buffer v. Not inlined: its
    buffers and loop would cost every meeting of a plain run registers in the compiled
    meeting (``run_block``)."""
    d = w.shape[0]
    probe = np.empty(d)
    unit = np.ones(1)
    for t in range(etas.shape[0]):
        probe[:] = w
        step(data, rank, probe, x[t : t + 1], unit)
        eta = etas[t]
        for j in range(d):
            g = w[j] - probe[j]
            vj = beta * v[j] + g
            v[j] = vj
            w[j] -= eta * (g + beta * vj) if nesterov else eta * vj


# What a step reads first, fetched ahead while its workers meet: at ``every: 1`` the meeting
# would otherwise end and the step then wait for its random row from memory. Pool loops pick
# row ``min(int(u * n), n - 1)`` for each uniform u of a step (``kernels``); the streams read
# nothing that is not already in cache.
def _pool_rows(data: Any, x: Any) -> None:
    X = data.X
    n = X.shape[0]
    for k in range(x.shape[0]):
        row = X[min(int(x[k] * n), n - 1)]  # the meeting's pack is borrowed: no refcount
        for j in range(0, row.shape[0], 8):  # a 64-byte line holds 8 float64s
            prefetch(row, j)


def _csr_rows(data: Any, x: Any) -> None:
    n = data.indptr.shape[0] - 1
    for k in range(x.shape[0]):
        prefetch(data.indptr, min(int(x[k] * n), n - 1))


def _nothing(data: Any, x: Any) -> None:
    return None


_AHEAD: dict[type, Callable[..., None]] = {
    DenseLinear: _pool_rows,
    PcaPool: _pool_rows,
    Mlp: _pool_rows,
    SoftmaxDense: _pool_rows,
    CsrLinear: _csr_rows,
    SoftmaxCsr: _csr_rows,
}


def _ahead(data: Pack, x: np.ndarray) -> None:
    raise NotImplementedError("compiled code only: call fetch_ahead()")


@overload(_ahead, jit_options={"nogil": True}, inline="always")
def _typed_ahead(data: Any, x: Any) -> Callable[..., None]:
    return _AHEAD.get(data.instance_class, _nothing)


@njit(cache=True, nogil=True, inline="always")
def fetch_ahead(data: Pack, x: np.ndarray) -> None:
    """Start bringing into cache what a step with inputs ``x`` (one step's row) reads first."""
    _ahead(data, x)


def _identity(uniforms: np.ndarray) -> np.ndarray:
    return uniforms


@dataclass(frozen=True)
class StepKernel:
    """What the compiled meetings need from a problem to run its local steps."""

    data: Pack
    # Uniforms of a block of steps (steps x uniforms_per_step) -> the loop's inputs, float64
    # C-contiguous, one row per step (vectorised numpy: Box-Muller for the streams).
    prepare: Callable[[np.ndarray], np.ndarray] = _identity
