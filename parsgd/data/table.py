"""A labelled table from a file or from scikit-learn: checks, held-out split, scaling, labels.

File and bundled data go through the same steps, in this order, so that a data set and the
same numbers written to a file give the same run: check values are finite, split off the
held-out part (a permutation drawn from the data seed), fit the scaling on the training part
only and apply it to both, then check the labels against the objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.data.sparse import is_sparse
from parsgd.errors import DataError
from parsgd.rng import DATA_STREAM, generator

# np.ndarray or scipy.sparse.csr_matrix; Any because scipy's type stubs are partial.
Matrix = Any


@dataclass
class Table:
    """Rows of features ``X`` [n, d] (dense or CSR) and labels ``y`` [n] (or None)."""

    X: Matrix
    y: np.ndarray | None
    source: str  # named in error messages: a file path or "bundled data set digits"
    row_word: str = "row"  # "line" where rows are the file's lines

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    def take(self, rows: np.ndarray) -> Table:
        y = None if self.y is None else self.y[rows]
        return Table(self.X[rows], y, self.source, "row")


def check_table(table: Table) -> None:
    """DataError for an empty table or a non-finite value, naming the first bad row."""
    if table.n == 0 or table.X.shape[1] == 0:
        raise DataError(f"{table.source}: no data (0 rows or 0 features)")
    if table.y is not None and table.y.shape[0] != table.n:
        raise DataError(
            f"{table.source}: dimension mismatch: {table.n} rows of features but "
            f"{table.y.shape[0]} labels"
        )
    if is_sparse(table.X):
        bad = ~np.isfinite(table.X.data)
        rows = np.searchsorted(table.X.indptr, np.flatnonzero(bad), side="right") - 1
    else:
        rows = np.flatnonzero(~np.isfinite(table.X).all(axis=1))
    if table.y is not None:
        rows = np.union1d(rows, np.flatnonzero(~np.isfinite(table.y)))
    if len(rows):
        raise DataError(
            f"{table.source}: {table.row_word} {int(rows.min()) + 1} holds a NaN or infinite "
            "value; remove or impute it"
        )


def split(table: Table, test_fraction: float, seed: int) -> tuple[Table, Table | None]:
    """Training and held-out parts; the permutation depends only on ``seed`` and n."""
    n_test = round(test_fraction * table.n)
    if n_test == 0:
        return table, None
    if n_test >= table.n:
        raise DataError(f"{table.source}: {table.n} rows are too few for a held-out split")
    order = generator(seed, DATA_STREAM, 4).permutation(table.n)
    return table.take(np.sort(order[n_test:])), table.take(np.sort(order[:n_test]))


def standardize(train: Table, test: Table | None, how: str) -> tuple[Table, Table | None]:
    """Scale (and centre) every feature by statistics of the training part.

    Constant features keep scale 1. Sparse data is scaled only: centring would fill it in.
    """
    if how == "none":
        return train, test
    X = train.X
    if is_sparse(X):
        if how == "center_scale":
            raise DataError(
                f"{train.source}: data.standardize center_scale would make sparse data dense; "
                "use scale or none"
            )
        mean_sq = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        mean = np.asarray(X.mean(axis=0)).ravel()
        std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
        centre = np.zeros_like(std)
    else:
        std = X.std(axis=0)
        centre = X.mean(axis=0) if how == "center_scale" else np.zeros(X.shape[1])
    std = np.where(std > 0, std, 1.0)

    def apply(table: Table) -> Table:
        if is_sparse(table.X):
            import scipy.sparse as sp

            scaled = sp.csr_matrix(table.X @ sp.diags(1.0 / std))
        else:
            scaled = (table.X - centre) / std
        return Table(scaled, table.y, table.source, table.row_word)

    return apply(train), None if test is None else apply(test)


def binary_labels(y: np.ndarray | None, source: str, objective: str) -> np.ndarray:
    """Labels as -1.0/+1.0 for logistic and hinge; {0, 1} is mapped to {-1, +1}."""
    values = require_labels(y, source, objective)
    found = set(np.unique(values).tolist())
    if found <= {-1.0, 1.0}:
        return values.astype(np.float64)
    if found <= {0.0, 1.0}:
        return np.where(values > 0, 1.0, -1.0)
    shown = ", ".join(f"{v:g}" for v in sorted(found)[:5]) + (", ..." if len(found) > 5 else "")
    raise DataError(
        f"{source}: objective {objective} needs labels -1/+1 or 0/1; found {len(found)} "
        f"distinct values ({shown})"
        + ("; for K classes use objective.kind softmax" if len(found) > 2 else "")
    )


def class_labels(y: np.ndarray | None, source: str, objective: str) -> tuple[np.ndarray, int]:
    """Integer class labels 0..k-1 (in sorted order of the original values) and k."""
    values = require_labels(y, source, objective)
    if not np.all(values == np.round(values)):
        raise DataError(f"{source}: objective {objective} needs integer class labels")
    classes, codes = np.unique(values, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"{source}: objective {objective} needs at least two classes")
    return codes.astype(np.int64), len(classes)


def require_labels(y: np.ndarray | None, source: str, objective: str) -> np.ndarray:
    """The labels as float64, or a DataError if the data has none."""
    if y is None:
        raise DataError(f"{source}: objective {objective} needs labels; set data.label")
    return np.asarray(y, dtype=np.float64)
