"""The C baseline of averaging every step: what two cores allow a meeting to cost.

Two threads run the benchmark's dense least-squares loop (``c_loops``), each on its own
model, and meet every ``every`` steps the way parsgd's compiled meetings do: announce by a
release store of a generation into the thread's own 128-byte line, spin on the peer's with
acquire loads (no yield, no sleep, no fault checks: the ceiling), then write the average of
both rows of the current buffer into the thread's row of the other buffer (double-buffered,
one barrier a round). Built at ``-O3 -march=native -ffast-math -pthread``. Its every-1 /
every-end ratio bounds ours: a round trip of one cache line between the two cores is about
100 ns, so where a step costs tens of ns no implementation can average every step cheaply.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.bench.c_loops import FLAGS, compiler
from parsgd.bench.report import Row
from parsgd.rng import StepStream

SOURCE = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

typedef struct {
    const double *X, *y, *u;  /* u: this thread's uniforms, one per step */
    double *W;                /* [2][2][stride]: buffer, thread, model */
    _Atomic int64_t *arrive;  /* thread r's counter at arrive[16 r] */
    int64_t n, d, stride, steps, every, rank;
    double eta, seconds;
} job_t;

static void *run(void *arg) {
    job_t *j = arg;
    int64_t d = j->d, s = j->stride, r = j->rank, generation = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int cur = 0;
    for (int64_t t = 0; t < j->steps; t++) {
        double *w = j->W + (cur * 2 + r) * s;
        int64_t i = (int64_t)(j->u[t] * (double)j->n);
        if (i > j->n - 1) i = j->n - 1;
        const double *x = j->X + i * d;
        double z = 0.0;
        for (int64_t k = 0; k < d; k++) z += x[k] * w[k];
        double g = j->eta * (z - j->y[i]);
        for (int64_t k = 0; k < d; k++) w[k] -= g * x[k];
        if (j->every == 0 || (t + 1) % j->every != 0) continue;
        generation++;
        atomic_store_explicit(&j->arrive[16 * r], generation, memory_order_release);
        while (atomic_load_explicit(&j->arrive[16 * (1 - r)], memory_order_acquire) < generation)
            ;
        const double *a = j->W + (cur * 2) * s, *b = j->W + (cur * 2 + 1) * s;
        double *out = j->W + ((1 - cur) * 2 + r) * s;
        for (int64_t k = 0; k < d; k++) out[k] = (a[k] + b[k]) / 2.0;
        cur = 1 - cur;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    j->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return 0;
}

/* Samples per second of both threads: steps each, meeting every `every` (0: never). */
double two_threads(const double *X, const double *y, const double *u0, const double *u1,
                   double *W, int64_t *arrive, int64_t n, int64_t d, int64_t stride,
                   int64_t steps, int64_t every, double eta) {
    job_t jobs[2];
    const double *us[2] = {u0, u1};
    pthread_t threads[2];
    for (int r = 0; r < 2; r++) {
        jobs[r] = (job_t){X, y, us[r], W, (_Atomic int64_t *)arrive, n, d, stride, steps,
                          every, r, eta, 0.0};
        pthread_create(&threads[r], 0, run, &jobs[r]);
    }
    for (int r = 0; r < 2; r++) pthread_join(threads[r], 0);
    double slowest = jobs[0].seconds > jobs[1].seconds ? jobs[0].seconds : jobs[1].seconds;
    return 2.0 * (double)steps / slowest;
}
"""

# (n, d): the H curve's dense setting, and a d = 10 pool as small as the pca row's.
SETTINGS = {"d=100": (100_000, 100), "d=10": (10_000, 10)}


def _build(workdir: Path) -> Any:
    path, _ = compiler()
    if path is None:
        return None
    source, target = workdir / "meet.c", workdir / "meet.so"
    source.write_text(SOURCE)
    flags = [*FLAGS["c_fast"], "-pthread", "-shared", "-fPIC"]
    subprocess.run([path, *flags, "-o", str(target), str(source)], check=True)
    lib = ctypes.CDLL(str(target))
    lib.two_threads.restype = ctypes.c_double
    return lib


def _rate(lib: Any, n: int, d: int, steps: int, every: int) -> float:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    u = [StepStream(0, 0, r, 1).uniforms(0, steps)[:, 0].copy() for r in range(2)]
    stride = -(-d // 16) * 16
    W = np.zeros((2, 2, stride))
    arrive = np.zeros(32, dtype=np.int64)
    ptr = ctypes.c_void_p
    rate = lib.two_threads(
        *(ptr(a.ctypes.data) for a in (X, y, u[0], u[1], W, arrive)),
        *(ctypes.c_int64(v) for v in (n, d, stride, steps, every)),
        ctypes.c_double(0.002 if d >= 100 else 0.01),
    )
    return float(rate)


def measure(quick: bool) -> dict[str, Any]:
    """Samples/s of both threads at every 1 and every end, medians of interleaved reps."""
    path, version = compiler()
    if path is None:
        return {"skipped": version}
    steps, reps = (200_000, 3) if quick else (1_000_000, 5)
    result: dict[str, Any] = {"compiler": version, "flags": [*FLAGS["c_fast"], "-pthread"]}
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        lib = _build(Path(tmp))
        for name, (n, d) in SETTINGS.items():
            got: dict[str, list[float]] = {"1": [], "end": []}
            for _ in range(reps):
                got["1"].append(_rate(lib, n, d, steps, 1))
                got["end"].append(_rate(lib, n, d, steps, 0))
            result[name] = {h: float(np.median(v)) for h, v in got.items()}
    return result


def _meeting_ns(rates: dict[str, float]) -> float:
    """Extra ns a step costs at every 1 over every end (rates count both threads' samples)."""
    return 2e9 / rates["1"] - 2e9 / rates["end"]


def rows(raw: dict[str, Any], throughput: dict[str, Any]) -> list[Row]:
    """The C ceiling's every-1 / every-end ratio, and ours against its meeting cost."""
    if "skipped" in raw:
        return [Row("C two threads every 1 / every end", None, "samples/s", "", None, None, None,
                    raw["skipped"])]  # fmt: skip
    ours = {"d=100": throughput["h_curve"], "d=10": throughput["objectives"].get("pca")}
    out = []
    for name in SETTINGS:
        c = raw[name]
        out.append(
            Row(f"C two threads {name} every 1", c["1"], "samples/s", "C every end", c["end"],
                c["1"] / c["end"], None, "the same meeting, spin-only barrier: the ceiling")
        )  # fmt: skip
        mine = ours[name]
        if mine:
            label = "dense d=100" if name == "d=100" else "pca d=10"
            out.append(
                Row(f"meeting cost every 1 M=2, {label}", _meeting_ns(mine), "ns",
                    f"C two threads {name}", _meeting_ns(c), _meeting_ns(c) / _meeting_ns(mine),
                    None, "per step, over every end; ratio = C / ours")
            )  # fmt: skip
    return out
