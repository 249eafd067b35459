"""Samples per second of whole runs through the real engine (``run_experiment``, processes).

Throughput is ``samples / wall_s`` at the last trace row of a trial (the trial's own clock,
start-up excluded), the median over the trials of one run. The H curve runs M = 2 workers at
d = 100 with averaging every H steps; parallel efficiency compares M = 2 with M = 1, both
averaging rarely (every 1000 steps), interleaved so a noisy neighbour hits both alike. The
objective rows run pca, mlp (hidden 16), quadratic and sparse logistic (a small svmlight
file) at small d with M = 2, averaging every step against one-shot, side by side, and
beside each pair the C ceiling of averaging every step at the same model length
(``c_meetings``).
"""

from __future__ import annotations

import csv
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.bench.c_meetings import Ceiling
from parsgd.config.load import load_config
from parsgd.data.shared import LocalArena
from parsgd.engine.runner import run_experiment
from parsgd.problems.registry import build_problem

H_VALUES: tuple[int | str, ...] = (1, 2, 5, 10, 20, 50, 100, 1000, "end")
H_QUICK: tuple[int | str, ...] = (1, 10, 100, "end")
_N, _D = 100_000, 100


_DENSE = [f"data={{kind: gaussian_linear, n: {_N}, d: {_D}, noise: 0.1}}", "sgd.step_size=0.002"]


def objectives(directory: Path) -> dict[str, list[str]]:
    """The small-d objectives of the every-1 / every-end rows, as ``--set`` overrides."""
    svm = directory / "small.svm"
    if not svm.exists():
        from sklearn.datasets import dump_svmlight_file

        rng = np.random.default_rng(0)
        X = rng.standard_normal((5000, 50)) * (rng.random((5000, 50)) < 0.2)
        dump_svmlight_file(X, np.where(X @ rng.standard_normal(50) > 0, 1, -1), str(svm))
    return {
        "pca": [
            "data={kind: pca_spectrum, n: 10000, d: 10, eigenvalues: [1.0, 0.3, 0.2, 0.2, 0.1, "
            "0.1, 0.1, 0.05, 0.05, 0.05]}",
            "objective={kind: pca}",
            "sgd.init=independent",
            "sgd.step_size=0.01",
        ],
        "mlp": [
            "data={kind: logistic_planted, n: 10000, d: 10}",
            "objective={kind: mlp, hidden: 16, l2: 0.0001}",
            "sgd.step_size=0.01",
        ],
        "quadratic": [
            "data={kind: none}",
            "objective={kind: quadratic, d: 4, eig_max: 1.0, eig_min: 0.25, sigma: 0.5, beta: 0.5}",
            "sgd.step_size=0.01",
        ],
        "sparse_logistic": [
            f"data={{kind: file, path: {svm}, format: svmlight}}",
            "objective={kind: logistic, l2: 0.0001}",
            "sgd.step_size=0.01",
        ],
    }


def model_size(setting: list[str]) -> int:
    """The length of the averaged model of an objective row (what a meeting moves)."""
    spec = load_config(None, ["workers=2", *setting])
    return int(build_problem(spec, LocalArena()).d)


def run_rate(
    out: Path, workers: int, every: int | str, steps: int, trials: int, setting: list[str] = _DENSE
) -> float:
    """Median samples/s over the trials of one engine run."""
    name = f"m{workers}_h{every}"
    overrides = [
        f"name={name}",
        "seed=0",
        f"trials={trials}",
        f"workers={workers}",
        "backend=processes",
        *setting,
        f"sgd.steps={steps}",
        f"averaging.every={every}",
        f"eval.every={steps}",
    ]
    spec = load_config(None, overrides)
    result = run_experiment(spec, out, force=True)  # its own scratch runs, remeasured
    if result.status != "completed":
        raise RuntimeError(f"benchmark run {name} ended {result.status}: {result.reason}")
    return trial_rate(result.directory, steps)


def trial_rate(run_dir: Path, steps: int) -> float:
    """Median over a run's trials of samples / wall_s at the last trace row (the trial's own
    clock: start-up, data generation and the kernel warm-up are not in it)."""
    with (run_dir / "trace.csv").open() as handle:
        last = {}
        for row in csv.DictReader(handle):
            if int(row["step"]) == steps:
                last[row["trial"]] = int(row["samples"]) / float(row["wall_s"])
    return float(np.median(list(last.values())))


def _steps_for(quick: bool) -> int:
    """Long enough that the two evaluations of a trial (~10 ms at n=1e5, d=100) are noise."""
    return 100_000 if quick else 1_000_000


def _pair_steps(quick: bool, every: str) -> int:
    """An every-end run of a small-d objective is 4x longer: 1M steps of pca one-shot last
    ~30 ms, where one scheduler tick moved its rate 1.5x (54-90 M samples/s in six runs)."""
    return _steps_for(quick) * (4 if every == "end" else 1)


def measure(quick: bool) -> dict[str, Any]:
    """The H curve (M = 2) and the M = 1 vs M = 2 parallel efficiency.

    Both are measured in passes (every H once, then again): a neighbour's burst on the shared
    cores then spoils one sample of several points instead of every sample of one point.
    """
    trials, passes = (1, 2) if quick else (1, 3)
    h_values = H_QUICK if quick else H_VALUES
    logging.getLogger("parsgd").setLevel(logging.ERROR)  # advisories are expected here
    curve: dict[str, list[float]] = {str(h): [] for h in h_values}
    ratios: dict[str, dict[str, list[float]]] = {}
    pairs: dict[int, list[float]] = {1: [], 2: []}
    ceiling = Ceiling(200_000 if quick else 1_000_000)
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp, ceiling:
        out = Path(tmp)
        settings = objectives(out)
        sizes = {name: model_size(setting) for name, setting in settings.items()}
        for _ in range(passes):
            for h in h_values:
                curve[str(h)].append(run_rate(out, 2, h, _steps_for(quick), trials))
            ceiling.sample("d=100", _D, _N)  # beside the H curve's every 1 and every end
            for name, setting in settings.items():
                got = ratios.setdefault(name, {"1": [], "end": []})
                for h in ("1", "end"):  # side by side, so one noisy burst hits both
                    got[h].append(run_rate(out, 2, h, _pair_steps(quick, h), trials, setting))
                ceiling.sample(name, sizes[name])  # the host's ceiling, in the same minute
            for _ in range(1 if quick else 2):  # short runs, many pairs
                for workers in (1, 2):
                    pairs[workers].append(run_rate(out, workers, 1000, 200_000, trials))
    return {
        "d": _D,
        "n": _N,
        "workers": 2,
        "h_curve": {h: float(np.median(v)) for h, v in curve.items()},
        "h_curve_samples": curve,
        "objectives": {
            name: {h: float(np.median(v)) for h, v in got.items()} for name, got in ratios.items()
        },
        "ceiling": ceiling.result(),
        "m1": float(np.median(pairs[1])),
        "m2": float(np.median(pairs[2])),
        "pairs": pairs,
    }
