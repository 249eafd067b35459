"""Softmax regression: the compiled kernels against a naive loop, its optimum against
scikit-learn, and ``objective: softmax`` on K-class file and bundled data through the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import cli_in_process, run_cli
from sklearn.datasets import dump_svmlight_file, load_digits
from sklearn.linear_model import LogisticRegression

from parsgd.data.shared import LocalArena
from parsgd.data.sparse import publish_csr
from parsgd.engine.rundir import read_trace
from parsgd.problems.kernels import softmax
from parsgd.problems.optima import solve_softmax
from parsgd.problems.softmax import SoftmaxPool

RTOL = 1e-12


def _data(n: int = 40, p: int = 6, k: int = 4, seed: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * (rng.random((n, p)) < 0.6)
    y = rng.integers(0, k, n).astype(np.int64)
    return X, y, rng


def _naive_loss_and_grad(X: np.ndarray, y: np.ndarray, w: np.ndarray, k: int, rows: list[int]):
    """Textbook cross-entropy of softmax(W x) and its gradient, summed over ``rows``."""
    W = w.reshape(k, X.shape[1])
    grad = np.zeros_like(W)
    total = 0.0
    for i in rows:
        z = [sum(W[c, j] * X[i, j] for j in range(X.shape[1])) for c in range(k)]
        lse = math.log(sum(math.exp(v) for v in z))
        total += lse - z[y[i]]
        prob = np.array([math.exp(v - lse) for v in z])
        prob[y[i]] -= 1.0
        grad += np.outer(prob, X[i])
    return total, grad.ravel()


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_softmax_gradient_loss_and_accuracy(sparse: bool, batch: int) -> None:
    X, y, rng = _data()
    n, p, k, l2 = 40, 6, 4, 0.2
    w = rng.standard_normal(k * p) * 0.5
    features = publish_csr(sp.csr_matrix(X), LocalArena()) if sparse else X
    test = (sp.csr_matrix(X) if sparse else X, y)
    problem = SoftmaxPool(features, y, k, l2, batch, test)
    u = rng.random((1, batch))
    rows = [min(int(v * n), n - 1) for v in u[0]]
    w_new = w.copy()
    problem.sgd(w_new, u, np.array([1.0]))
    _, grad = _naive_loss_and_grad(X, y, w, k, rows)
    np.testing.assert_allclose(w - w_new, grad / batch + l2 * w, rtol=RTOL, atol=1e-14)
    total, _ = _naive_loss_and_grad(X, y, w, k, list(range(n)))
    assert problem.loss(w) == pytest.approx(total / n + l2 / 2 * w @ w, rel=RTOL)
    metrics = problem.extra_metrics(w)
    predicted = np.argmax(X @ w.reshape(k, p).T, axis=1)
    assert metrics["test_accuracy"] == np.mean(predicted == y)
    assert metrics["test_loss"] == pytest.approx(total / n, rel=RTOL)


def test_sparse_loop_with_l2_matches_dense_over_many_steps() -> None:
    X, y, rng = _data(n=60, p=20)
    u, etas = rng.random((300, 2)), np.full(300, 0.05)
    w_dense, w_sparse = np.zeros(4 * 20), np.zeros(4 * 20)
    softmax.sgd_dense(X, y, w_dense, u, etas, 0.1, 4)
    csr = publish_csr(sp.csr_matrix(X), LocalArena())
    softmax.sgd_csr(csr.data, csr.indices, csr.indptr, 20, y, w_sparse, u, etas, 0.1, 4)
    np.testing.assert_allclose(w_sparse, w_dense, rtol=1e-11)
    assert np.abs(w_dense).max() > 0.01  # it moved


def test_optimum_has_a_vanishing_gradient_and_agrees_with_scikit_learn() -> None:
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)
    X, y = X[:400], y[:400]
    n, p, k, l2 = len(y), X.shape[1], 10, 0.01
    for matrix in (X, sp.csr_matrix(X)):
        w = solve_softmax(matrix, y, k, l2)
        prob = np.exp(X @ w.reshape(k, p).T)
        prob /= prob.sum(1, keepdims=True)
        prob[np.arange(n), y] -= 1.0
        grad = (prob.T @ X) / n + l2 * w.reshape(k, p)
        assert np.linalg.norm(grad) < 1e-9
    # scikit-learn minimises C sum_i loss_i + 1/2 ||W||^2: the same problem for C = 1/(n l2).
    reference = LogisticRegression(C=1.0 / (n * l2), fit_intercept=False, tol=1e-12, max_iter=5000)
    reference.fit(X, y)
    np.testing.assert_allclose(w, reference.coef_.ravel(), atol=1e-5)
    # Power: the optimum for another l2 is told apart at this tolerance.
    other = solve_softmax(X, y, k, 2 * l2)
    assert np.abs(other - reference.coef_.ravel()).max() > 1e-2


def _trace(directory: Path) -> list[dict[str, str]]:
    return read_trace(directory / "trace.csv")


def test_softmax_on_a_ten_class_svmlight_file_and_bundled_digits(tmp_path: Path) -> None:
    X, y = load_digits(return_X_y=True)
    dump_svmlight_file(X / 16.0, y, str(tmp_path / "digits.svm"))
    common = ["--set", "sgd.steps=1500", "--set", "eval.every=500", "--set", "trials=1"]
    common += ["--set", "workers=2", "--out", str(tmp_path / "out")]
    result = run_cli(
        "run", "configs/softmax.yaml", "--set", "name=file", *common, "--set",
        f"data={{kind: file, path: {tmp_path / 'digits.svm'}, test_fraction: 0.2, "
        "standardize: scale}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run_cli("run", "configs/softmax.yaml", "--set", "name=bundled", *common)
    assert result.returncode == 0, result.stderr
    for name in ("file", "bundled"):
        rows = _trace(tmp_path / "out" / name)
        last = rows[-1]
        assert float(last["test_accuracy"]) > 0.85, (name, last)
        assert 0 < float(last["subopt"]) < 0.2 * float(rows[0]["subopt"])
        assert float(last["dist_opt_sq"]) < float(rows[0]["dist_opt_sq"])
        assert last["test_loss"] != ""


def test_softmax_refuses_a_stream_and_real_labels(tmp_path: Path) -> None:
    result = run_cli(
        "run", "configs/softmax.yaml", "--set", "data={kind: logistic_planted, stream: true}",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "data.stream must be false for objective.kind softmax" in result.stderr
    assert not any(tmp_path.iterdir())
    data = tmp_path / "real.npz"
    np.savez(data, X=np.ones((20, 3)), y=np.linspace(0.0, 1.0, 20))
    out = tmp_path / "out"
    # The later refusals through the CLI's main in this process (the first proved the
    # command-line path): the same checks, without a subprocess's start-up.
    result = cli_in_process(
        "run", "configs/softmax.yaml", "--set", f"data={{kind: file, path: {data}}}",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2
    assert "integer class labels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # logistic on ten classes points to softmax.
    result = cli_in_process(
        "run", "configs/logistic.yaml", "--set", "data={kind: bundled, name: digits}",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 2 and "use objective.kind softmax" in result.stderr
    assert not out.exists()
