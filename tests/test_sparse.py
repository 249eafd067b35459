"""Sparse data stays sparse: an rcv1-shaped svmlight file (47,236 features, ~76 non-zeros a
row) runs on the processes backend with peak memory far below its dense size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from conftest import ROOT, run_cli
from sklearn.datasets import dump_svmlight_file

from parsgd.engine.rundir import read_trace

N, D, NNZ_PER_ROW = 5000, 47236, 76

# Runs the CLI in a fresh interpreter and reports the peak resident memory of it and of its
# (waited-for) worker processes, in MiB. The coordinator's peak is its own address space's
# (VmHWM), not getrusage's ru_maxrss: Linux carries ru_maxrss across exec, so a child of a
# big pytest process (a full suite's, ~900 MiB) would report its parent's size.
_MEASURE = """
import json, re, resource, sys
from pathlib import Path
from parsgd.cli import main
status = main(sys.argv[1:])
hwm_kib = int(re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text()).group(1))
print(json.dumps({"status": status, "coordinator_mib": hwm_kib / 1024,
                  "workers_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def _rcv1_like(path: Path) -> None:
    rng = np.random.default_rng(0)
    cols = rng.integers(0, D, size=(N, NNZ_PER_ROW))
    X = sp.csr_matrix(
        (rng.random(N * NNZ_PER_ROW), cols.ravel(), np.arange(0, N * NNZ_PER_ROW + 1, NNZ_PER_ROW)),
        shape=(N, D),
    )
    X.sum_duplicates()
    y = np.where(X @ rng.standard_normal(D) > 0, 1, -1)
    dump_svmlight_file(X, y, str(path))


def test_rcv1_shaped_svmlight_runs_without_densifying(tmp_path: Path) -> None:
    _rcv1_like(tmp_path / "rcv1_like.svm")
    config = {
        "name": "sparse",
        "trials": 1,
        "workers": 2,
        "backend": "processes",
        "data": {"kind": "file", "path": "rcv1_like.svm", "test_fraction": 0.1},
        "objective": {"kind": "logistic", "l2": 1e-3},
        "sgd": {"steps": 20000, "step_size": 0.2},
        "averaging": {"every": 100},
        "eval": {"every": 5000},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    # A fresh numba cache: the run compiles its kernels as on a new checkout, and LLVM's peak
    # counts against the bound too (a run compiles only its own objective's loop).
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba_cache")}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, "run", str(tmp_path / "c.yaml"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    peak = json.loads(result.stdout.strip().splitlines()[-1])
    assert peak["status"] == 0
    dense_mib = N * D * 8 / 2**20  # 1,802 MiB
    # Interpreter, numpy, scipy, scikit-learn and numba, with LLVM compiling the kernels
    # into a fresh cache, peak at ~400 MiB alone and ~450 MiB inside the suite; the data
    # take ~5 MiB. Densified, X alone would be 1,802 MiB: a third of it is the bound.
    assert peak["coordinator_mib"] < dense_mib / 3, peak
    assert peak["workers_mib"] < dense_mib / 3, peak
    trace = read_trace(out / "sparse" / "trace.csv")
    assert float(trace[-1]["subopt"]) < 0.5 * float(trace[0]["subopt"])
    assert trace[-1]["test_accuracy"]


@pytest.mark.parametrize("objective", ["least_squares", "logistic", "hinge"])
def test_sparse_objectives_learn_and_backends_agree(tmp_path: Path, objective: str) -> None:
    rng = np.random.default_rng(1)
    X = sp.random(300, 2000, density=0.01, format="csr", random_state=1)
    y = np.where(X @ rng.standard_normal(2000) > 0, 1, -1)
    dump_svmlight_file(X, y, str(tmp_path / "small.svm"))
    config = {
        "name": "s",
        "trials": 2,
        "workers": 2,
        "data": {"kind": "file", "path": "small.svm", "n_features": 2000},
        "objective": {"kind": objective, "l2": 0.01},
        "sgd": {"steps": 400, "step_size": 0.5, "batch_size": 2},
        "averaging": {"every": 10},
        "eval": {"every": 100},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    traces = {}
    for backend in ("serial", "processes"):
        out = tmp_path / backend
        result = run_cli("run", str(tmp_path / "c.yaml"), "--set", f"backend={backend}",
                         "--out", str(out))  # fmt: skip
        assert result.returncode == 0, result.stderr
        traces[backend] = [
            {k: v for k, v in row.items() if k not in ("wall_s", "compute_s", "sync_wait_s")}
            for row in read_trace(out / "s" / "trace.csv")
        ]
    assert traces["serial"] == traces["processes"]
    final = [r for r in traces["serial"] if r["step"] == "400"]
    assert all(float(r["subopt"]) < 0.5 * float(traces["serial"][0]["subopt"]) for r in final)
