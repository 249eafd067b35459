"""The optimum ``w*`` of a convex problem on a finite data set, solved before the run, cached.

- least squares: the normal equations (dense, d <= 2048), else LSQR to 1e-14; closed form,
  so it is not cached for dense data.
- logistic with l2 > 0: Newton-CG with exact Hessian-vector products (scipy ``trust-ncg``)
  to a gradient norm of 1e-11; the objective is smooth and strongly convex, so this is
  accurate to about 1e-12 in ``w``.
- hinge with l2 > 0: non-smooth, so no gradient test applies. We use liblinear's dual
  coordinate descent (scikit-learn ``LinearSVC(loss="hinge", dual=True)``,
  ``C = 1 / (n l2)``, no intercept): the dual is a box-constrained QP whose solution gives the
  unique primal ``w*`` (the L2 term makes the primal strongly convex). Its stopping rule is
  tightened to 1e-10 (the most it reaches in double precision); ``f*`` is the primal value
  at that ``w``. The tests check that no small move from it lowers the objective.
- softmax with l2 > 0: the same trust-region Newton-CG on the K x p weights, with exact
  Hessian-vector products ``X^T (P * A - P * rowsum(P * A)) / n + l2 V`` where ``A = X V^T``
  and ``P`` the softmax probabilities; smooth and strongly convex, so the same accuracy.
- without l2, logistic, hinge and softmax may have no minimiser (separable data; softmax is
  also shift-invariant): no optimum, and the trace's ``dist_opt_sq`` and ``subopt`` stay empty.

Cache: ``$PARSGD_CACHE`` (default ``~/.cache/parsgd``)/optima/<key>.npy, the key a SHA-256
of the data bytes, the objective and its parameters, so a sweep solves each problem once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.data.sparse import is_sparse

log = logging.getLogger("parsgd")

# np.ndarray or scipy.sparse.csr_matrix; Any because scipy's type stubs are partial.
Matrix = Any
_SOLVER_VERSION = 1  # bump when a solver changes, to invalidate old cache entries
_DENSE_SOLVE_MAX_D = 2048
# liblinear's stopping rule cannot reach much below 1e-10 in double precision: asking for
# 1e-12 made it run all its passes (minutes on an rcv1-shaped set) for no gain.
_HINGE_MAX_ITER = 100_000


def cache_dir() -> Path:
    root = os.environ.get("PARSGD_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "parsgd"


def cache_key(X: Matrix, y: np.ndarray, objective: str, params: dict[str, float]) -> str:
    digest = hashlib.sha256()
    header = {"objective": objective, "params": params, "version": _SOLVER_VERSION}
    digest.update(json.dumps(header, sort_keys=True).encode())
    arrays = (X.data, X.indices, X.indptr) if is_sparse(X) else (X,)
    for array in (*arrays, y):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:32]


def cached(key: str, solve: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    """``solve()``, or its stored result under ``key``. A cache that cannot be written is
    skipped with a log line, never an error."""
    path = cache_dir() / "optima" / f"{key}.npy"
    if path.exists():
        with contextlib.suppress(OSError, ValueError):
            return np.load(path, allow_pickle=False)
    w = solve()
    if w is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, w)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("optimum not cached (%s): %s", path.parent, exc)
    return w


def solve_least_squares(X: Matrix, y: np.ndarray, l2: float) -> np.ndarray | None:
    """argmin 1/(2n) ||X w - y||^2 + l2/2 ||w||^2, or None if it is not unique."""
    n, d = X.shape
    if not is_sparse(X) and d <= _DENSE_SOLVE_MAX_D:
        gram = X.T @ X / n + l2 * np.eye(d)
        try:
            return np.asarray(np.linalg.solve(gram, X.T @ y / n))
        except np.linalg.LinAlgError:
            return None
    if l2 == 0.0 and n < d:
        return None
    from scipy.sparse.linalg import lsqr

    result = lsqr(X, y, damp=float(np.sqrt(n * l2)), atol=1e-14, btol=1e-14, iter_lim=100 * d)
    return np.asarray(result[0])


def solve_logistic(X: Matrix, y: np.ndarray, l2: float) -> np.ndarray:
    """argmin 1/n sum log(1 + exp(-y_i x_i^T w)) + l2/2 ||w||^2 (y in {-1, +1}, l2 > 0)."""
    from scipy.optimize import minimize
    from scipy.special import expit

    n, d = X.shape

    def value_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = y * (X @ w)
        value = np.logaddexp(0.0, -m).mean() + 0.5 * l2 * (w @ w)
        grad = X.T @ (-y * expit(-m)) / n + l2 * w
        return float(value), np.asarray(grad)

    def hessp(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        s = expit(y * (X @ w))
        return np.asarray(X.T @ (s * (1.0 - s) * (X @ v)) / n + l2 * v)

    result = minimize(
        value_and_grad,
        np.zeros(d),
        jac=True,
        hessp=hessp,
        method="trust-ncg",
        options={"gtol": 1e-11, "maxiter": 1000},
    )
    return np.asarray(result.x)


def solve_hinge(X: Matrix, y: np.ndarray, l2: float) -> np.ndarray:
    """argmin 1/n sum max(0, 1 - y_i x_i^T w) + l2/2 ||w||^2 (y in {-1, +1}, l2 > 0)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    n = X.shape[0]
    if is_sparse(X) and X.nnz < 2**31:
        # liblinear takes 32-bit indices only; parsgd's CSR keeps a 64-bit indptr.
        import scipy.sparse as sp

        X = sp.csr_matrix(
            (X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape
        )
    svm = LinearSVC(
        loss="hinge",
        dual=True,
        C=1.0 / (n * l2),
        fit_intercept=False,
        tol=1e-10,
        max_iter=_HINGE_MAX_ITER,
        random_state=0,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svm.fit(X, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning(
            "hinge optimum: liblinear stopped after %d passes before reaching tol 1e-10; "
            "dist_opt_sq and subopt are approximate",
            _HINGE_MAX_ITER,
        )
    return np.asarray(svm.coef_.ravel(), dtype=np.float64)


SOLVERS: dict[str, Callable[[Matrix, np.ndarray, float], np.ndarray | None]] = {
    "least_squares": solve_least_squares,
    "logistic": solve_logistic,
    "hinge": solve_hinge,
}


def solve_softmax(X: Matrix, y: np.ndarray, classes: int, l2: float) -> np.ndarray:
    """argmin 1/n sum (logsumexp(W x_i) - (W x_i)[y_i]) + l2/2 ||W||^2, flat row-major W
    (K x p), y in 0..K-1, l2 > 0."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n, p = X.shape
    onehot = np.zeros((n, classes))
    onehot[np.arange(n), y] = 1.0

    def probabilities(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_p = log_softmax(np.asarray(X @ w.reshape(classes, p).T), axis=1)
        return log_p, np.exp(log_p)

    def value_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        log_p, prob = probabilities(w)
        value = -(log_p * onehot).sum() / n + 0.5 * l2 * (w @ w)
        grad = np.asarray(X.T @ (prob - onehot)).T / n
        return float(value), grad.ravel() + l2 * w

    def hessp(w: np.ndarray, v: np.ndarray) -> np.ndarray:
        _, prob = probabilities(w)
        a = prob * np.asarray(X @ v.reshape(classes, p).T)
        b = a - prob * a.sum(axis=1, keepdims=True)
        return np.asarray(X.T @ b).T.ravel() / n + l2 * v

    result = minimize(
        value_and_grad,
        np.zeros(classes * p),
        jac=True,
        hessp=hessp,
        method="trust-ncg",
        options={"gtol": 1e-11, "maxiter": 1000},
    )
    return np.asarray(result.x)


def softmax_optimum(X: Matrix, y: np.ndarray, classes: int, l2: float) -> np.ndarray | None:
    """``w*`` of softmax regression on (X, y) for l2 > 0 (else None), cached."""
    if l2 == 0.0:
        return None
    key = cache_key(X, y, "softmax", {"l2": l2, "classes": classes})
    return cached(key, lambda: solve_softmax(X, y, classes, l2))


def linear_optimum(X: Matrix, y: np.ndarray, objective: str, l2: float) -> np.ndarray | None:
    """``w*`` of a linear model on (X, y), from the cache when it was solved before."""
    if objective != "least_squares" and l2 == 0.0:
        return None
    solve = SOLVERS[objective]
    if objective == "least_squares" and not is_sparse(X) and X.shape[1] <= _DENSE_SOLVE_MAX_D:
        return solve(X, y, l2)  # closed form, cheaper than hashing
    return cached(cache_key(X, y, objective, {"l2": l2}), lambda: solve(X, y, l2))
