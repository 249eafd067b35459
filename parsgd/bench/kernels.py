"""Per-worker SGD throughput: parsgd's numba kernel against a C loop, scikit-learn and numpy.

Every implementation runs the same update on the same rows, drawn by the same uniforms:
``i = floor(u_t * n)``, ``r = x_i^T w - y_i``, ``w = (1 - eta l2) w - eta r x_i``. The C loop is
written here and compiled with the system compiler into a temporary directory, twice: ``-O2``
(no ``-ffast-math``: like numba's default, the dot product is summed in order, so it cannot be
vectorised) and ``-O3 -march=native -ffast-math`` (like ``@njit(fastmath=True)``).
scikit-learn's SGDRegressor runs one epoch over a shuffled order instead of uniform draws.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from parsgd.problems.kernels.linear import LEAST_SQUARES, sgd_csr, sgd_dense

_C_SOURCE = r"""
#include <stdint.h>
void sgd_dense(const double *X, const double *y, double *w, const double *u,
               const double *etas, int64_t n, int64_t d, int64_t steps, double l2) {
    for (int64_t t = 0; t < steps; t++) {
        int64_t i = (int64_t)(u[t] * (double)n);
        if (i > n - 1) i = n - 1;
        const double *x = X + i * d;
        double s = 0.0;
        for (int64_t j = 0; j < d; j++) s += x[j] * w[j];
        double r = s - y[i], eta = etas[t], decay = 1.0 - eta * l2;
        for (int64_t j = 0; j < d; j++) w[j] = decay * w[j] - eta * (r * x[j]);
    }
}
void sgd_csr(const int64_t *indptr, const int32_t *indices, const double *data,
             const double *y, double *w, const double *u, const double *etas,
             int64_t n, int64_t steps) {
    for (int64_t t = 0; t < steps; t++) {
        int64_t i = (int64_t)(u[t] * (double)n);
        if (i > n - 1) i = n - 1;
        double s = 0.0;
        for (int64_t k = indptr[i]; k < indptr[i + 1]; k++) s += data[k] * w[indices[k]];
        double g = etas[t] * (s - y[i]);
        for (int64_t k = indptr[i]; k < indptr[i + 1]; k++) w[indices[k]] -= g * data[k];
    }
}
"""

C_FLAGS = {"c_O2": ["-O2"], "c_fast": ["-O3", "-march=native", "-ffast-math"]}

_sgd_dense_fastmath = njit(cache=True, nogil=True, fastmath=True)(sgd_dense.py_func)
LS = LEAST_SQUARES  # the engine kernel serves three losses; the benchmark is least squares


def compile_c(workdir: Path) -> dict[str, Any]:
    """Build the C baselines; returns {name: ctypes library} (empty if no compiler)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return {}
    source = workdir / "sgd.c"
    source.write_text(_C_SOURCE)
    libraries: dict[str, Any] = {}
    for name, flags in C_FLAGS.items():
        target = workdir / f"{name}.so"
        subprocess.run(
            [compiler, *flags, "-shared", "-fPIC", "-o", str(target), str(source)], check=True
        )
        lib = ctypes.CDLL(str(target))
        lib.sgd_dense.restype = None
        lib.sgd_csr.restype = None
        libraries[name] = lib
    return libraries


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    return ctypes.c_void_p(a.ctypes.data)


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


def _rate(run: Callable[[], None], updates: int) -> float:
    tic = time.perf_counter()
    run()
    return updates / (time.perf_counter() - tic)


def dense_rates(
    n: int, d: int, steps: int, reps: int, libs: dict[str, Any], seed: int = 0
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
    runs: dict[str, tuple[Callable[[], None], int]] = {
        "numba": (lambda: sgd_dense(X, y, w, u, etas, 0.0, LS), steps),
        "numba_fastmath": (lambda: _sgd_dense_fastmath(X, y, w, u, etas, 0.0, LS), steps),
        "numpy_loop": (lambda: _numpy_loop(X, y, w, u[:naive_steps], eta), naive_steps),
    }
    for name, lib in libs.items():
        args = (_ptr(X), _ptr(y), _ptr(w), _ptr(u), _ptr(etas))
        sizes = (ctypes.c_int64(n), ctypes.c_int64(d), ctypes.c_int64(steps))

        def call(lib: Any = lib, args: tuple = args, sizes: tuple = sizes) -> None:
            lib.sgd_dense(*args, *sizes, ctypes.c_double(0.0))

        runs[name] = (call, steps)
    epoch = _sklearn_epoch(X, y, eta)
    if epoch is not None:
        runs["sklearn"] = (epoch, n)
    rates = _interleave(runs, reps)
    if "c_O2" in libs:  # the C loop must be the same computation, to the last bit
        w_numba, w_c = np.zeros(d), np.zeros(d)
        sgd_dense(X, y, w_numba, u[:1000], etas[:1000], 0.0, LS)
        libs["c_O2"].sgd_dense(
            _ptr(X),
            _ptr(y),
            _ptr(w_c),
            _ptr(u),
            _ptr(etas),
            ctypes.c_int64(n),
            ctypes.c_int64(d),
            ctypes.c_int64(1000),
            ctypes.c_double(0.0),
        )
        rates["c_O2_matches_numba"] = bool(np.allclose(w_numba, w_c, rtol=1e-12, atol=1e-14))
    rates["n"], rates["d"] = n, d
    return rates


def csr_rates(n: int, steps: int, reps: int, libs: dict[str, Any], seed: int = 0) -> dict[str, Any]:
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
    runs: dict[str, tuple[Callable[[], None], int]] = {
        "numba": (lambda: sgd_csr(data, indices, indptr, y, w, u, etas, 0.0, LS), steps)
    }
    for name, lib in libs.items():
        args = (_ptr(indptr), _ptr(indices), _ptr(data), _ptr(y), _ptr(w), _ptr(u), _ptr(etas))

        def call(lib: Any = lib, args: tuple = args) -> None:
            lib.sgd_csr(*args, ctypes.c_int64(n), ctypes.c_int64(steps))

        runs[name] = (call, steps)
    try:
        from scipy.sparse import csr_matrix

        matrix = csr_matrix((data, indices, indptr), shape=(n, d))
        epoch = _sklearn_epoch(matrix, y, eta)
        if epoch is not None:
            runs["sklearn"] = (epoch, n)
    except ImportError:
        pass
    rates = _interleave(runs, reps)
    rates["n"], rates["d"], rates["nnz_per_row"] = n, d, nnz
    return rates


def _interleave(runs: dict[str, tuple[Callable[[], None], int]], reps: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, (run, updates) in runs.items():
            samples[name].append(_rate(run, updates))
    return {name: float(np.median(values)) for name, values in samples.items()}


def measure(quick: bool) -> dict[str, Any]:
    """All kernel rows: dense d = 10, 100, 1000 and rcv1-shaped sparse."""
    steps, reps = (300_000, 3) if quick else (2_000_000, 5)
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        libs = compile_c(Path(tmp))
        out: dict[str, Any] = {"c_compiler": shutil.which("cc"), "c_flags": C_FLAGS}
        for d, n in ((10, 100_000), (100, 100_000), (1000, 20_000 if quick else 50_000)):
            out[f"dense_d{d}"] = dense_rates(n, d, steps // max(1, d // 100), reps, libs)
        out["csr_rcv1"] = csr_rates(20_000 if quick else 200_000, steps, reps, libs)
    return out
