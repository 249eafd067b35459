"""Optima solved before the run: accurate, and cached by data and objective."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import ROOT
from sklearn import datasets
from sklearn.datasets import load_breast_cancer

from parsgd.data.bundled import load_bundled
from parsgd.data.table import binary_labels, class_labels
from parsgd.errors import DataError
from parsgd.problems.optima import (
    cache_key,
    cached,
    solve_hinge,
    solve_least_squares,
    solve_logistic,
)


def _data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    return X, np.where(y > 0, 1.0, -1.0)


def _logistic_grad(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    return X.T @ (-y / (1 + np.exp(y * (X @ w)))) / len(y) + l2 * w


def _hinge(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    return float(np.maximum(0, 1 - y * (X @ w)).mean() + l2 / 2 * w @ w)


def test_logistic_optimum_has_a_vanishing_gradient() -> None:
    X, y = _data()
    for matrix in (X, sp.csr_matrix(X)):
        w = solve_logistic(matrix, y, 0.01)
        assert np.linalg.norm(_logistic_grad(X, y, w, 0.01)) < 1e-10


def test_least_squares_optimum_dense_and_sparse_agree() -> None:
    X, y = _data()
    dense = solve_least_squares(X, y, 0.01)
    sparse = solve_least_squares(sp.csr_matrix(X), y, 0.01)
    assert dense is not None and sparse is not None
    np.testing.assert_allclose(sparse, dense, rtol=1e-8, atol=1e-10)
    gradient = X.T @ (X @ dense - y) / len(y) + 0.01 * dense
    assert np.linalg.norm(gradient) < 1e-12


def test_hinge_optimum_is_not_improved_by_small_moves() -> None:
    X, y = _data()
    l2 = 0.01
    w = solve_hinge(X, y, l2)
    best = _hinge(X, y, w, l2)
    # The CSR layout parsgd publishes (64-bit indptr) works too and gives the same optimum.
    csr = sp.csr_matrix(X)
    csr.indptr = csr.indptr.astype(np.int64)
    np.testing.assert_allclose(solve_hinge(csr, y, l2), w, rtol=1e-6, atol=1e-9)
    rng = np.random.default_rng(0)
    for _ in range(200):
        direction = rng.standard_normal(w.size)
        for t in (1e-2, 1e-4, 1e-6):
            assert _hinge(X, y, w + t * direction / np.linalg.norm(direction), l2) >= best - 1e-12


def test_cache_is_keyed_by_data_and_parameters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARSGD_CACHE", str(tmp_path))
    X, y = _data()
    key = cache_key(X, y, "logistic", {"l2": 0.01})
    assert key != cache_key(X, y, "logistic", {"l2": 0.02})
    assert key != cache_key(X, y, "hinge", {"l2": 0.01})
    assert key != cache_key(X[:-1], y[:-1], "logistic", {"l2": 0.01})
    calls = []

    def solve() -> np.ndarray:
        calls.append(1)
        return np.arange(3.0)

    np.testing.assert_array_equal(cached(key, solve), np.arange(3.0))
    np.testing.assert_array_equal(cached(key, solve), np.arange(3.0))
    assert len(calls) == 1 and (tmp_path / "optima" / f"{key}.npy").exists()


@pytest.mark.parametrize(
    ("name", "rows", "classes"),
    [("breast_cancer", 569, 2), ("digits", 1797, 10), ("iris", 150, 3), ("wine", 178, 3)],
)
def test_bundled_sets_load_with_their_classes(name: str, rows: int, classes: int) -> None:
    table = load_bundled(name)
    assert table.n == rows
    assert class_labels(table.y, table.source, "mlp")[1] == classes


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes", "digits", "iris", "wine"])
def test_bundled_sets_are_scikit_learns_arrays_bit_for_bit(name: str) -> None:
    # Four are read from scikit-learn's files without its import; diabetes through its loader.
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    table = load_bundled(name)
    assert table.X.dtype == np.float64 and table.y.dtype == np.float64
    np.testing.assert_array_equal(table.X, X)
    np.testing.assert_array_equal(table.y, y.astype(np.float64))
    assert table.X.tobytes() == np.asarray(X, dtype=np.float64).tobytes()


def test_bundled_data_loads_without_importing_scikit_learn() -> None:
    # The CLI's start-up would pay over a second for it (parsgd/data/bundled.py).
    code = (
        "import sys; from parsgd.data.bundled import load_bundled; "
        "[load_bundled(n) for n in ('breast_cancer', 'digits', 'iris', 'wine')]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_labels_that_do_not_fit_the_objective() -> None:
    np.testing.assert_array_equal(binary_labels(np.array([0.0, 1.0]), "s", "hinge"), [-1, 1])
    with pytest.raises(DataError, match="needs labels -1/\\+1 or 0/1; found 3"):
        binary_labels(np.array([0.0, 1.0, 2.0]), "s", "logistic")
    with pytest.raises(DataError, match="integer class labels"):
        class_labels(np.array([0.5, 1.0]), "s", "mlp")
    with pytest.raises(DataError, match="at least two classes"):
        class_labels(np.array([1.0, 1.0]), "s", "mlp")
