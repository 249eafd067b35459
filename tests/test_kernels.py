"""Compiled kernels against deliberately naive numpy references, to 1e-12 relative.

Each check runs one SGD step with step size 1 from a random w, so ``w - w_new`` is the
mini-batch gradient the kernel used, and compares it with the textbook formula.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import run_cli, write_config

from parsgd.data.shared import LocalArena
from parsgd.data.sparse import publish_csr
from parsgd.problems.kernels import linear, mlp, pca
from parsgd.problems.linear import LinearPool
from parsgd.problems.pca import PcaPool, PcaStream
from parsgd.problems.planted import PlantedStream
from parsgd.problems.quadratic import Quadratic
from parsgd.rng import normals_from_uniforms

RTOL = 1e-12


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _naive_linear_grad(X: np.ndarray, y: np.ndarray, w: np.ndarray, rows: list[int], kind: str):
    grad = np.zeros_like(w)
    for i in rows:
        z = sum(X[i, j] * w[j] for j in range(len(w)))
        if kind == "least_squares":
            g = z - y[i]
        elif kind == "logistic":
            g = -y[i] / (1.0 + math.exp(y[i] * z))
        else:
            g = -y[i] if y[i] * z < 1 else 0.0
        grad += g * X[i]
    return grad / len(rows)


def _naive_linear_loss(X, y, w, kind) -> float:
    z = X @ w
    if kind == "least_squares":
        return float(np.sum(0.5 * (z - y) ** 2))
    if kind == "logistic":
        return float(np.sum(np.log1p(np.exp(-y * z))))
    return float(np.sum(np.maximum(0.0, 1.0 - y * z)))


@pytest.mark.parametrize("kind", ["least_squares", "logistic", "hinge"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_linear_gradient_and_loss(kind: str, sparse: bool, batch: int) -> None:
    rng = _rng()
    n, d, l2 = 40, 7, 0.3
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.5)
    y = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    w = rng.standard_normal(d) * 0.3
    u = rng.random((1, batch))
    rows = [min(int(v * n), n - 1) for v in u[0]]
    features = publish_csr(sp.csr_matrix(X), LocalArena()) if sparse else X
    problem = LinearPool(features, y, kind, l2, batch)
    w_new = w.copy()
    problem.sgd(w_new, u, np.array([1.0]))
    expected = _naive_linear_grad(X, y, w, rows, kind) + l2 * w
    np.testing.assert_allclose(w - w_new, expected, rtol=RTOL, atol=1e-15)
    loss = problem.loss(w)
    assert loss == pytest.approx(_naive_linear_loss(X, y, w, kind) / n + l2 / 2 * w @ w, rel=RTOL)


def test_sparse_loop_with_l2_matches_dense_over_many_steps() -> None:
    rng = _rng()
    n, d = 50, 30
    X = rng.standard_normal((n, d)) * (rng.random((n, d)) < 0.2)
    y = X @ rng.standard_normal(d)
    u, etas = rng.random((200, 2)), np.full(200, 0.05)
    w_dense, w_sparse = np.zeros(d), np.zeros(d)
    linear.sgd_dense(X, y, w_dense, u, etas, 0.1, linear.LEAST_SQUARES)
    csr = publish_csr(sp.csr_matrix(X), LocalArena())
    linear.sgd_csr(csr.data, csr.indices, csr.indptr, y, w_sparse, u, etas, 0.1, 0)
    np.testing.assert_allclose(w_sparse, w_dense, rtol=1e-11)


def test_sparse_loop_without_l2_is_the_dense_loop_up_to_the_sum_order() -> None:
    # The dense dot product is summed in vector lanes (vector.FAST allows reassociation), the
    # sparse one over the non-zeros in gather order: the two may differ in the last bits of
    # each dot product, ~d ulps at most, and 100 contracting steps do not amplify that.
    rng = _rng()
    X = rng.standard_normal((30, 12)) * (rng.random((30, 12)) < 0.3)
    y = np.where(rng.random(30) < 0.5, 1.0, -1.0)
    u, etas = rng.random((100, 1)), np.full(100, 0.1)
    w_dense, w_sparse = np.zeros(12), np.zeros(12)
    linear.sgd_dense(X, y, w_dense, u, etas, 0.0, linear.LOGISTIC)
    csr = publish_csr(sp.csr_matrix(X), LocalArena())
    linear.sgd_csr(csr.data, csr.indices, csr.indptr, y, w_sparse, u, etas, 0.0, linear.LOGISTIC)
    np.testing.assert_allclose(w_sparse, w_dense, rtol=1e-13, atol=1e-15)


def _misaligned(a: np.ndarray, shift: int) -> np.ndarray:
    """A copy of ``a`` whose data starts ``shift`` doubles past a 64-byte boundary."""
    raw = np.empty(a.size + 16)
    start = (-(raw.ctypes.data // 8) % 8) + shift
    out = raw[start : start + a.size].reshape(a.shape)
    out[...] = a
    return out


@pytest.mark.parametrize("d", [3, 10, 37, 100])
def test_fast_kernels_give_the_same_bits_wherever_the_arrays_sit(d: int) -> None:
    # Serial runs use numpy arrays, process runs shared memory: the vectorised loops must not
    # depend on alignment (no peeling loop that would change the order of a sum).
    rng = _rng()
    X = rng.standard_normal((50, d))
    y = rng.standard_normal(50)
    u, etas = rng.random((300, 2)), np.full(300, 0.3 / d)
    results = []
    for shift in range(4):
        w = _misaligned(np.zeros(d), shift)
        linear.sgd_dense(_misaligned(X, 3 - shift), y, w, u, etas, 0.01, linear.LEAST_SQUARES)
        results.append(w.tobytes())
    assert len(set(results)) == 1


@pytest.mark.parametrize("kind", ["least_squares", "logistic", "hinge"])
def test_fast_kernels_keep_nan_and_inf_visible(kind: str) -> None:
    # vector.FAST never allows nnan/ninf: a non-finite input must come out non-finite, or
    # divergence detection would see a finite w.
    rng = _rng()
    X, y = rng.standard_normal((20, 16)), np.where(rng.random(20) < 0.5, 1.0, -1.0)
    u, etas = rng.random((5, 1)), np.full(5, 0.1)
    problem = LinearPool(X, y, kind, 0.1, 1)
    for bad in (np.nan, np.inf):
        w = np.zeros(16)
        w[3] = bad
        problem.sgd(w, u, etas)
        assert not np.all(np.isfinite(w))
        assert not math.isfinite(problem.loss(w))
    w_pca = np.full(16, 1e200)  # ||w||^2 overflows to inf inside the step
    pca.sgd_dense(X, w_pca, u[:1], etas[:1])
    assert not np.all(np.isfinite(w_pca))


@pytest.mark.parametrize("beta", [0.0, 0.7])
@pytest.mark.parametrize("batch", [1, 2])
def test_quadratic_gradient(beta: float, batch: int) -> None:
    rng = _rng()
    d, sigma = 4, 0.5
    eigs = np.array([2.0, 1.0, 0.5, 0.1])
    w_opt, w = rng.standard_normal(d), rng.standard_normal(d)
    problem = Quadratic(eigs, w_opt, sigma, beta, batch)
    u = rng.random((1, problem.uniforms_per_step))
    w_new = w.copy()
    problem.sgd(w_new, u, np.array([1.0]))
    z = normals_from_uniforms(u, problem.uniforms_per_step)[0]
    per = d * d + d if beta > 0 else d
    e = w - w_opt
    grad = np.zeros(d)
    for k in range(batch):
        block = z[k * per : (k + 1) * per]
        Z = block[: d * d].reshape(d, d) if beta > 0 else np.zeros((d, d))
        xi = block[-d:]
        grad += (np.diag(eigs) + math.sqrt(beta) * Z) @ e + sigma * xi
    np.testing.assert_allclose(w - w_new, grad / batch, rtol=RTOL)
    assert problem.loss(w) == pytest.approx(0.5 * e @ np.diag(eigs) @ e, rel=RTOL)


@pytest.mark.parametrize("batch", [1, 3])
def test_pca_pool_gradient_and_loss(batch: int) -> None:
    rng = _rng()
    X, w = rng.standard_normal((25, 5)), rng.standard_normal(5)
    u = rng.random((1, batch))
    w_new = w.copy()
    pca.sgd_dense(X, w_new, u, np.array([1.0]))
    rows = [min(int(v * 25), 24) for v in u[0]]
    grad = sum((w @ w) * w - (X[i] @ w) * X[i] for i in rows) / batch
    np.testing.assert_allclose(w - w_new, grad, rtol=RTOL)
    naive = np.mean([0.25 * np.sum((np.outer(x, x) - np.outer(w, w)) ** 2) for x in X])
    assert PcaPool(X, batch).loss(w) == pytest.approx(naive, rel=RTOL)


def test_pca_stream_gradient_and_population_loss() -> None:
    rng = _rng()
    d = 4
    eigs = np.array([1.0, 0.5, 0.2, 0.1])
    V = np.linalg.qr(rng.standard_normal((d, d)))[0]
    problem = PcaStream(eigs, V, 2)
    w = rng.standard_normal(d)
    u = rng.random((1, problem.uniforms_per_step))
    w_new = w.copy()
    problem.sgd(w_new, u, np.array([1.0]))
    z = normals_from_uniforms(u, 2 * d)[0]
    xs = [V @ (np.sqrt(eigs) * z[k * d : (k + 1) * d]) for k in range(2)]
    grad = sum((w @ w) * w - (x @ w) * x for x in xs) / 2
    np.testing.assert_allclose(w - w_new, grad, rtol=RTOL)
    S = V @ np.diag(eigs) @ V.T
    # E||xx^T - ww^T||^2 = E||x||^4 - 2 w^T S w + ||w||^4, E||x||^4 = (tr S)^2 + 2 tr S^2.
    expected = 0.25 * (np.trace(S) ** 2 + 2 * np.trace(S @ S) - 2 * w @ S @ w + (w @ w) ** 2)
    assert problem.loss(w) == pytest.approx(expected, rel=RTOL)


def _naive_mlp(x: np.ndarray, label: int, w: np.ndarray, p: int, h: int, k: int):
    W1 = w[: h * p].reshape(h, p)
    b1 = w[h * p : h * p + h]
    W2 = w[h * p + h : h * p + h + k * h].reshape(k, h)
    b2 = w[h * p + h + k * h :]
    a = np.tanh(W1 @ x + b1)
    o = W2 @ a + b2
    prob = np.exp(o - o.max()) / np.exp(o - o.max()).sum()
    loss = -np.log(prob[label])
    do = prob.copy()
    do[label] -= 1
    da = (W2.T @ do) * (1 - a**2)
    grad = np.concatenate([np.outer(da, x).ravel(), da, np.outer(do, a).ravel(), do])
    return loss, grad


@pytest.mark.parametrize("batch", [1, 3])
def test_mlp_gradient_and_loss(batch: int) -> None:
    rng = _rng()
    n, p, h, k, l2 = 20, 5, 4, 3, 0.01
    X = rng.standard_normal((n, p))
    y = rng.integers(0, k, n).astype(np.int64)
    w = rng.standard_normal(mlp.n_params(p, h, k)) * 0.5
    u = rng.random((1, batch))
    w_new = w.copy()
    mlp.sgd(X, y, w_new, u, np.array([1.0]), l2, h, k)
    rows = [min(int(v * n), n - 1) for v in u[0]]
    grad = sum(_naive_mlp(X[i], y[i], w, p, h, k)[1] for i in rows) / batch + l2 * w
    np.testing.assert_allclose(w - w_new, grad, rtol=RTOL, atol=1e-15)
    total, correct = mlp.evaluate(X, y, w, 0, n, h, k)
    naive = sum(_naive_mlp(X[i], y[i], w, p, h, k)[0] for i in range(n))
    assert total == pytest.approx(naive, rel=1e-12)
    assert 0 <= correct <= n


@pytest.mark.parametrize("kind", ["least_squares", "logistic", "hinge"])
def test_planted_stream_gradient(kind: str) -> None:
    rng = _rng()
    d, batch, l2 = 5, 3, 0.1
    w_true, w = rng.standard_normal(d), rng.standard_normal(d) * 0.3
    problem = PlantedStream(w_true, kind, l2, batch)
    u = rng.random((1, problem.uniforms_per_step))
    w_new = w.copy()
    problem.sgd(w_new, u, np.array([1.0]))
    columns = problem.uniforms_per_step - batch
    z = normals_from_uniforms(u[:, :columns], batch * d)[0]
    X = z.reshape(batch, d)
    y = np.where(u[0, columns:] < 1.0 / (1.0 + np.exp(-X @ w_true)), 1.0, -1.0)
    expected = _naive_linear_grad(X, y, w, list(range(batch)), kind) + l2 * w
    np.testing.assert_allclose(w - w_new, expected, rtol=RTOL, atol=1e-15)


def test_gaussian_stream_least_squares_matches_reference() -> None:
    from parsgd.problems.kernels.least_squares import sgd_stream

    rng = np.random.default_rng(2)
    d, batch, steps = 4, 3, 20
    w_true, noise = rng.standard_normal(d), 0.3
    z = rng.standard_normal((steps, batch * (d + 1)))
    etas = np.full(steps, 0.05)
    w = np.zeros(d)
    sgd_stream(w_true, noise, w, z, etas, 0.0, batch)
    ref = np.zeros(d)
    for t in range(steps):
        grad = np.zeros(d)
        for k in range(batch):
            x = z[t, k * (d + 1) : k * (d + 1) + d]
            y = x @ w_true + noise * z[t, k * (d + 1) + d]
            grad += (x @ ref - y) * x
        ref = ref - etas[t] * grad / batch
    np.testing.assert_allclose(w, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "settings",
    [
        ["data={kind: gaussian_linear, n: 2000, d: 100, noise: 0.3}", "sgd.step_size=0.5"],
        [
            "data={kind: gaussian_linear, n: 2000, d: 100, noise: 0.3}",
            "sgd.step_size=0.5",
            "averaging.every=1",
        ],
        ["objective={kind: pca}", "data={kind: pca_spectrum, n: 2000, d: 37}", "sgd.step_size=5"],
    ],
    ids=["dense-d100", "dense-d100-every1", "pca-d37"],
)
def test_a_blow_up_with_the_fast_kernels_ends_diverged(tmp_path: Path, settings: list[str]) -> None:
    # d = 100 and 37 run the vectorised main loops and their remainders; every 1 runs the
    # compiled meetings' per-sample step. Overflow must reach the divergence check as inf/NaN.
    config = write_config(tmp_path / "c.yaml", sgd={"steps": 2000})
    args = [item for setting in settings for item in ("--set", setting)]
    done = run_cli("run", str(config), "--out", str(tmp_path), *args)
    assert done.returncode == 3, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "diverged", record
