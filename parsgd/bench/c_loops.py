"""The C baselines: the benchmark's SGD loops written in plain C, built with the system compiler.

The loops do the update parsgd's kernels do (``i = floor(u_t n)``, ``r = x_i^T w - y_i``,
``w = (1 - eta l2) w - eta r x_i``), dense and CSR, and are compiled twice into a temporary
directory: ``-O3 -march=native -ffast-math`` (the ceiling: vectorised, FMA, any sum order)
and ``-O2`` (generic x86-64, sums in order; for information). Each build records the
compiler's version line and its flags, so the table can say what it compared against.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SOURCE = r"""
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

FLAGS = {"c_fast": ["-O3", "-march=native", "-ffast-math"], "c_O2": ["-O2"]}


@dataclass
class CLoops:
    """One build of ``SOURCE``: call ``dense`` and ``csr`` on numpy arrays."""

    lib: Any
    flags: list[str]

    def dense(
        self, X: np.ndarray, y: np.ndarray, w: np.ndarray, u: np.ndarray, etas: np.ndarray
    ) -> None:
        n, d = X.shape
        self.lib.sgd_dense(
            *map(_ptr, (X, y, w, u, etas)),
            ctypes.c_int64(n),
            ctypes.c_int64(d),
            ctypes.c_int64(len(etas)),
            ctypes.c_double(0.0),
        )

    def csr(
        self,
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        u: np.ndarray,
        etas: np.ndarray,
    ) -> None:
        assert indices.dtype == np.int32 and indptr.dtype == np.int64
        self.lib.sgd_csr(
            *map(_ptr, (indptr, indices, data, y, w, u, etas)),
            ctypes.c_int64(len(indptr) - 1),
            ctypes.c_int64(len(etas)),
        )


def _ptr(a: np.ndarray) -> ctypes.c_void_p:
    assert a.flags.c_contiguous
    return ctypes.c_void_p(a.ctypes.data)


def compiler() -> tuple[str | None, str]:
    """(path of cc or gcc, its version line), or (None, why not)."""
    path = shutil.which("cc") or shutil.which("gcc")
    if path is None:
        return None, "no C compiler (cc, gcc) on PATH"
    done = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    lines = done.stdout.splitlines()
    return path, lines[0] if lines else "unknown version"


def build(workdir: Path) -> dict[str, CLoops]:
    """Compile ``SOURCE`` with every entry of ``FLAGS``; empty if there is no compiler."""
    path, _ = compiler()
    if path is None:
        return {}
    source = workdir / "sgd.c"
    source.write_text(SOURCE)
    loops: dict[str, CLoops] = {}
    for name, flags in FLAGS.items():
        target = workdir / f"{name}.so"
        subprocess.run(
            [path, *flags, "-shared", "-fPIC", "-o", str(target), str(source)], check=True
        )
        lib = ctypes.CDLL(str(target))
        lib.sgd_dense.restype = None
        lib.sgd_csr.restype = None
        loops[name] = CLoops(lib, flags)
    return loops
