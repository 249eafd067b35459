"""Per-worker SGD throughput: parsgd's kernels against C, numba fastmath, scikit-learn, numpy.

Every implementation runs the same update on the same rows, drawn by the same uniforms:
``i = floor(u_t * n)``, ``r = x_i^T w - y_i``, ``w = (1 - eta l2) w - eta r x_i``. The C
loops (``c_loops``) are the ceiling. ``numba_fastmath`` is our loop compiled with
``fastmath=True``, every flag including nnan/ninf (which parsgd refuses: NaN must stay
visible). scikit-learn's SGDRegressor runs one epoch over a shuffled order instead of uniform
draws. Repetitions are interleaved (a, b, c, a, b, c, ...) so a neighbour's burst on the
shared machine hits every implementation alike; every rep's rate is kept.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from parsgd.bench import c_loops
from parsgd.problems.kernels.linear import LEAST_SQUARES, sgd_csr, sgd_dense
from parsgd.rng import StepStream

_sgd_dense_fastmath = njit(cache=True, nogil=True, fastmath=True)(sgd_dense.py_func)
LS = LEAST_SQUARES  # the engine kernel serves three losses; the benchmark is least squares
Runs = dict[str, tuple[Callable[[], None], int]]


def _numpy_loop(X: np.ndarray, y: np.ndarray, w: np.ndarray, u: np.ndarray, eta: float) -> None:
    """The naive floor: what a user writes in plain numpy, one sample at a time."""
    n = X.shape[0]
    for t in range(u.shape[0]):
        i = min(int(u[t, 0] * n), n - 1)
        x = X[i]
        w -= eta * (x @ w - y[i]) * x


def _sklearn_epoch(X: Any, y: np.ndarray, eta: float) -> Callable[[], None] | None:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import SGDRegressor
    except ImportError:
        return None

    def run() -> None:
        model = SGDRegressor(
            penalty=None,
            learning_rate="constant",
            eta0=eta,
            max_iter=1,
            tol=None,
            fit_intercept=False,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)

    return run


def _interleave(runs: Runs, reps: int) -> dict[str, Any]:
    """Median updates/s per implementation, and every sample under ``samples``."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, (run, updates) in runs.items():
            tic = time.perf_counter()
            run()
            samples[name].append(updates / (time.perf_counter() - tic))
    rates: dict[str, Any] = {name: float(np.median(v)) for name, v in samples.items()}
    rates["samples"] = samples
    return rates


def dense_rates(
    n: int, d: int, steps: int, reps: int, loops: dict[str, c_loops.CLoops], seed: int = 0
) -> dict[str, Any]:
    """Median updates/s of every implementation at one (n, d), interleaved rep by rep."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ (rng.standard_normal(d) / np.sqrt(d)) + 0.1 * rng.standard_normal(n)
    eta = 0.2 / d
    u = rng.random((steps, 1))
    etas = np.full(steps, eta)
    naive_steps = min(steps, 20_000)
    w = np.zeros(d)
    sgd_dense(X, y, w, u[:10], etas[:10], 0.0, LS)  # compile (or load from the cache)
    _sgd_dense_fastmath(X, y, w, u[:10], etas[:10], 0.0, LS)
    runs: Runs = {
        "numba": (lambda: sgd_dense(X, y, w, u, etas, 0.0, LS), steps),
        "numba_fastmath": (lambda: _sgd_dense_fastmath(X, y, w, u, etas, 0.0, LS), steps),
        "numpy_loop": (lambda: _numpy_loop(X, y, w, u[:naive_steps], eta), naive_steps),
    }
    for name, loop in loops.items():
        runs[name] = (partial(loop.dense, X, y, w, u, etas), steps)
    epoch = _sklearn_epoch(X, y, eta)
    if epoch is not None:
        runs["sklearn"] = (epoch, n)
    rates = _interleave(runs, reps)
    # The C loops must compute the same thing (up to the order of the dot product's sum).
    ours = np.zeros(d)
    sgd_dense(X, y, ours, u[:1000], etas[:1000], 0.0, LS)
    for name, loop in loops.items():
        theirs = np.zeros(d)
        loop.dense(X, y, theirs, u[:1000], etas[:1000])
        rates[f"{name}_matches"] = bool(np.allclose(ours, theirs, rtol=1e-9, atol=1e-12))
    rates["n"], rates["d"] = n, d
    return rates


def csr_rates(
    n: int, steps: int, reps: int, loops: dict[str, c_loops.CLoops], seed: int = 0
) -> dict[str, Any]:
    """rcv1-shaped data: d = 47,236 features, 74 non-zeros per row, rows of unit norm."""
    d, nnz = 47_236, 74
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.integers(0, d, size=(n, nnz), dtype=np.int32), axis=1).ravel()
    data = np.abs(rng.standard_normal(n * nnz))
    data /= np.repeat(np.sqrt(np.add.reduceat(data**2, np.arange(0, n * nnz, nnz))), nnz)
    indptr = np.arange(0, n * nnz + 1, nnz, dtype=np.int64)
    y = rng.standard_normal(n)
    eta = 0.5
    u = rng.random((steps, 1))
    etas = np.full(steps, eta)
    w = np.zeros(d)
    # The engine's CSR loop (parsgd.problems.kernels.linear.sgd_csr), as a sparse run uses it.
    sgd_csr(data, indices, indptr, y, w, u[:10], etas[:10], 0.0, LS)
    runs: Runs = {"numba": (lambda: sgd_csr(data, indices, indptr, y, w, u, etas, 0.0, LS), steps)}
    for name, loop in loops.items():
        runs[name] = (partial(loop.csr, data, indices, indptr, y, w, u, etas), steps)
    try:
        from scipy.sparse import csr_matrix

        epoch = _sklearn_epoch(csr_matrix((data, indices, indptr), shape=(n, d)), y, eta)
        if epoch is not None:
            runs["sklearn"] = (epoch, n)
    except ImportError:
        pass
    rates = _interleave(runs, reps)
    rates["n"], rates["d"], rates["nnz_per_row"] = n, d, nnz
    return rates


def uniform_draws(d: int, n: int, block: int, reps: int) -> dict[str, Any]:
    """Cost of the random-number path against the kernel it feeds, both per step.

    The engine draws each segment's uniforms ahead of time (PCG64 via ``StepStream``) and the
    kernel reads them once; ``block`` steps per draw is a segment between two meetings.
    """
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((n, d)), rng.standard_normal(n)
    stream = StepStream(0, 0, 0, 1)
    w = np.zeros(d)
    draw_s, kernel_s = [], []
    for rep in range(reps):
        tic = time.perf_counter()
        u = stream.uniforms(rep * block, (rep + 1) * block)
        toc = time.perf_counter()
        sgd_dense(X, y, w, u, np.full(block, 0.1 / d), 0.0, LS)
        draw_s.append((toc - tic) / block)
        kernel_s.append((time.perf_counter() - toc) / block)
    return {"d": d, "block": block, "draw_s": float(np.median(draw_s)),
            "kernel_s": float(np.median(kernel_s))}  # fmt: skip


def versions() -> dict[str, str]:
    """What each baseline is: compiler and library versions (or why it is missing)."""
    import numba

    _, cc = c_loops.compiler()
    out = {"cc": cc, "numba": numba.__version__, "numpy": np.__version__}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = "not installed (pip install 'parsgd[bench]')"
    for package in ("mpi4py", "mpich"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def measure(quick: bool) -> dict[str, Any]:
    """All kernel rows: dense d = 10, 100, 1000, rcv1-shaped sparse, and the uniform draws."""
    steps, reps = (100_000, 2) if quick else (2_000_000, 5)
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        loops = c_loops.build(Path(tmp))
        out: dict[str, Any] = {
            "versions": versions(),
            "c_flags": {name: " ".join(flags) for name, flags in c_loops.FLAGS.items()},
        }
        for d, n in ((10, 100_000), (100, 100_000), (1000, 20_000 if quick else 50_000)):
            out[f"dense_d{d}"] = dense_rates(n, d, steps // max(1, d // 100), reps, loops)
        out["csr_rcv1"] = csr_rates(20_000 if quick else 200_000, steps, reps, loops)
    out["uniforms"] = [uniform_draws(d, 100_000, 10_000, 3 if quick else 15) for d in (10, 100)]
    return out
