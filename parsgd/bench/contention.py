"""Meeting cost under contention: ``every: 1`` at M = 2 with a CPU-bound process competing.

A real run through the engine (``run_experiment``, processes backend) averages after every
step while one extra process spins on the same cores, and again without it. The trace's
``sync_wait_s`` (mean over workers, cumulative) and ``syncs`` at each evaluation give the mean
cost of the meetings of each interval between two evaluations; the distribution over the
intervals (median, p90, max) shows whether a peer that lost its core costs a time slice or
more. With two cores and three runnable processes some peer is always descheduled.
"""

from __future__ import annotations

import csv
import itertools
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.config.load import load_config
from parsgd.engine.runner import run_experiment

_SPIN = "import time\nend = time.time() + 600\nwhile time.time() < end:\n    pass\n"


def meeting_costs(out: Path, name: str, steps: int, interval: int) -> list[float]:
    """Seconds per meeting in each evaluation interval of one run (every 1, M = 2, d = 100)."""
    overrides = [
        f"name={name}",
        "seed=0",
        "trials=1",
        "workers=2",
        "backend=processes",
        "data={kind: gaussian_linear, n: 20000, d: 100, noise: 0.1}",
        f"sgd.steps={steps}",
        "sgd.step_size=0.002",
        "averaging.every=1",
        f"eval.every={interval}",
    ]
    result = run_experiment(load_config(None, overrides), out)
    if result.status != "completed":
        raise RuntimeError(f"benchmark run {name} ended {result.status}: {result.reason}")
    with (result.directory / "trace.csv").open() as handle:
        rows = [(int(r["syncs"]), float(r["sync_wait_s"])) for r in csv.DictReader(handle)]
    costs = []
    for (syncs0, wait0), (syncs1, wait1) in itertools.pairwise(rows):
        if syncs1 > syncs0:
            costs.append((wait1 - wait0) / (syncs1 - syncs0))
    return costs


def _summary(costs: list[float]) -> dict[str, float]:
    values = np.asarray(costs)
    return {
        "median": float(np.median(values)),
        "p90": float(np.quantile(values, 0.9)),
        "max": float(values.max()),
        "intervals": float(len(values)),
    }


def measure(quick: bool) -> dict[str, Any]:
    """Meeting cost distributions with and without one competing CPU-bound process."""
    steps, interval = (5_000, 250) if quick else (200_000, 1000)
    logging.getLogger("parsgd").setLevel(logging.ERROR)
    out: dict[str, Any] = {"steps": steps, "interval": interval}
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        out["alone"] = _summary(meeting_costs(Path(tmp), "alone", steps, interval))
        spinner = subprocess.Popen([sys.executable, "-c", _SPIN])
        try:
            out["competing"] = _summary(meeting_costs(Path(tmp), "competing", steps, interval))
        finally:
            spinner.kill()
            spinner.wait()
    return out
