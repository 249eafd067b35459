"""Measure what a sweep costs per run beyond the run itself, against one process per run.

    python scripts/sweep_overhead.py [--runs 24] [--steps 200]

A sweep of tiny runs (1 worker each, ``--jobs 1`` so nothing overlaps): per run, the wall
time the sweep spends on it minus the run's own ``run.json`` ``timings.total_s``. The
alternative, ``python -m parsgd run`` once per point, pays interpreter start-up, imports
and loading the compiled kernels every time; it is measured the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=24)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = {
            "workers": 1,
            "trials": 1,
            "data": {"n": 1000, "d": 8},
            "sgd": {"steps": args.steps},
            "eval": {"every": args.steps},
        }
        sweep = {"name": "tiny", "config": config, "seeds": list(range(args.runs))}
        (root / "sweep.yaml").write_text(yaml.safe_dump(sweep))
        command = [sys.executable, "-m", "parsgd", "sweep", str(root / "sweep.yaml")]
        tic = time.perf_counter()
        done = subprocess.run(
            [*command, "--out", str(root / "out"), "--jobs", "1"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        sweep_wall = time.perf_counter() - tic
        totals = _totals(root / "out" / "tiny")
        print(done.stdout.splitlines()[-2])
        print(
            f"sweep: {args.runs} runs in {sweep_wall:.2f} s; runs' own total_s "
            f"{sum(totals):.2f} s; whole-sweep overhead per run "
            f"{1000 * (sweep_wall - sum(totals)) / args.runs:.0f} ms (incl. start-up once)"
        )
        (root / "config.yaml").write_text(yaml.safe_dump({**config, "name": "one"}))
        walls = []
        for seed in range(min(args.runs, 8)):
            tic = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "parsgd", "run", str(root / "config.yaml"),
                 "--set", f"seed={seed}", "--set", f"name=s{seed}", "--out", str(root / "one")],
                capture_output=True, check=True,
            )  # fmt: skip
            walls.append(time.perf_counter() - tic)
        own = _totals(root / "one")
        per_run = statistics.mean(w - t for w, t in zip(walls, own, strict=True))
        print(f"one process per run: overhead per run {1000 * per_run:.0f} ms")


def _totals(directory: Path) -> list[float]:
    runs = sorted(directory.glob("*/run.json"))
    return [json.loads(p.read_text())["timings"]["total_s"] for p in runs]


if __name__ == "__main__":
    main()
