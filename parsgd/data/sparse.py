"""Sparse data that stays sparse: CSR arrays (in shared memory for the processes backend).

A 47,000-feature data set with 76 non-zeros per row is 1.2 KB a row as CSR and 380 KB dense;
nothing in parsgd turns a CSR matrix into a dense one. The compiled kernels take the three
CSR arrays directly (``parsgd.problems.kernels.linear``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from parsgd.data.synthetic import Arena

if TYPE_CHECKING:
    import scipy.sparse as sp


def is_sparse(matrix: object) -> bool:
    """``matrix`` is a scipy sparse matrix; never imports scipy (0.2-0.4 s at start-up): if
    ``scipy.sparse`` is not loaded, nothing made one, so a dense run never pays for it."""
    module = sys.modules.get("scipy.sparse")
    return module is not None and bool(module.issparse(matrix))


@dataclass(frozen=True)
class CSR:
    """A CSR matrix as three plain arrays: row i is ``data[indptr[i]:indptr[i+1]]`` at
    columns ``indices[...]`` (sorted, no duplicates)."""

    data: np.ndarray  # float64 [nnz]
    indices: np.ndarray  # int32 or int64 [nnz]
    indptr: np.ndarray  # int64 [n + 1]
    shape: tuple[int, int]

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def to_scipy(self) -> sp.csr_matrix:
        """A scipy view of the same arrays (no copy), for solvers and ``X @ w``."""
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape, copy=False)


def publish_csr(matrix: sp.spmatrix, arena: Arena) -> CSR:
    """Copy a scipy sparse matrix into ``arena`` as canonical CSR (float64 values)."""
    import scipy.sparse as sp

    m = sp.csr_matrix(matrix, dtype=np.float64)
    m.sum_duplicates()
    m.sort_indices()
    out = []
    for array, dtype in ((m.data, np.float64), (m.indices, m.indices.dtype), (m.indptr, np.int64)):
        shared = arena.empty(array.shape, dtype)
        shared[:] = array
        out.append(shared)
    return CSR(out[0], out[1], out[2], (int(m.shape[0]), int(m.shape[1])))


def publish_dense(X: np.ndarray, arena: Arena) -> np.ndarray:
    shared = arena.empty(X.shape, np.float64)
    shared[:] = X
    return shared


def take_rows(X: np.ndarray | CSR, rows: np.ndarray) -> np.ndarray | CSR:
    """A private copy of some rows of a dense or CSR matrix (for an evaluation on them)."""
    if not isinstance(X, CSR):
        return np.ascontiguousarray(X[rows])
    m = X.to_scipy()[rows]
    return CSR(m.data, m.indices, m.indptr.astype(np.int64), (int(m.shape[0]), int(m.shape[1])))
