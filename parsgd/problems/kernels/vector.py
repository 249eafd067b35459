"""Vector helpers every kernel's inner loops use: a dot product and two axpys, with FMA.

``FAST`` is the set of LLVM fast-math flags the kernels compile with: ``contract`` (fuse
``a * b + c`` into one FMA instruction) and ``reassoc`` (let the compiler reorder a sum, so
a dot product is split over the lanes of the vector unit and several accumulators). Never
``nnan`` or ``ninf``: with those the compiler may assume no NaN or inf exists and delete the
very values divergence detection looks for. Nor ``afn`` (approximate exp/log) or ``arcp``.

The helpers are inlined into the caller at Numba IR level (``inline="always"``): a call per
row would cost more than the row at d = 10, and inlined code is compiled with the caller's
flags, so every kernel that uses them must carry ``fastmath=FAST`` too.

Reproducibility: the order of a reassociated sum is fixed when the code is compiled, not when
it runs (no alignment peeling on x86-64, no threads), so one machine gives the same bits on
every backend and after a resume. Another CPU (another vector width, no FMA) may round the
last bits differently.
"""

from __future__ import annotations

import numpy as np
from numba import njit

FAST = {"contract", "reassoc"}


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def dot(x: np.ndarray, y: np.ndarray) -> float:
    """``sum_j x[j] y[j]`` over ``len(y)`` entries (vectorised, several accumulators)."""
    s = 0.0
    for j in range(y.shape[0]):
        s += x[j] * y[j]
    return s


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """``y += a x`` in place (one FMA per entry)."""
    for j in range(y.shape[0]):
        y[j] += a * x[j]


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def scale_axpy(b: float, y: np.ndarray, a: float, x: np.ndarray) -> None:
    """``y = b y + a x`` in place: an SGD step with L2 shrink ``b`` and step ``a`` along x."""
    for j in range(y.shape[0]):
        y[j] = b * y[j] + a * x[j]


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def sparse_dot(data: np.ndarray, indices: np.ndarray, lo: int, hi: int, y: np.ndarray) -> float:
    """``sum_p data[p] y[indices[p]]`` over the non-zeros ``p in [lo, hi)`` of one CSR row.

    Column numbers are read as unsigned: numba then skips its negative-index wraparound, a
    compare and select per gathered entry (~25 % of the loop). Indices are validated >= 0.
    """
    vals = data[lo:hi]
    cols = indices[lo:hi]
    s = 0.0
    for q in range(cols.shape[0]):
        s += vals[q] * y[np.uint64(cols[q])]
    return s


@njit(cache=True, nogil=True, fastmath=FAST, inline="always")
def sparse_axpy(
    a: float, data: np.ndarray, indices: np.ndarray, lo: int, hi: int, y: np.ndarray
) -> None:
    """``y += a x`` for the CSR row x held in ``data[lo:hi]``, ``indices[lo:hi]``."""
    vals = data[lo:hi]
    cols = indices[lo:hi]
    for q in range(cols.shape[0]):
        y[np.uint64(cols[q])] += a * vals[q]
