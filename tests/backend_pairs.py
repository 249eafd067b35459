"""Cases run on both backends by one ``parsgd sweep``, for the bit-for-bit tests.

A ``parsgd run`` per case and backend pays an interpreter start-up and imports each (seconds
of CPU); one sweep over ``backend`` with the cases' differing sections zipped forks every
run from one warm process. Each test then reads its own case's two runs, after checking
that both completed with exactly the config that case would have given ``parsgd run``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from conftest import _listed_processes, run_cli, wait_until

from parsgd.config.load import resolve, validate
from parsgd.sweep.spec import expand_sweep, load_sweep
from tests.helpers import numbers

BACKENDS = ("serial", "processes")

# (case, backend) -> (run directory, the resolved config it must have run)
Pairs = dict[tuple[str, str], tuple[Path, dict[str, Any]]]


def run_on_both_backends(root: Path, cases: dict[str, dict[str, Any]]) -> Pairs:
    """Run every case (name -> whole raw config) on both backends in one sweep under ``root``.

    A sweep's zip sets the same keys on every point, so a top-level key some cases leave out
    is spelled, in those, as the case itself resolves it; each filled case must resolve to
    the config it was, which is checked here.
    """
    every_key = {key for case in cases.values() for key in case}
    filled: dict[str, dict[str, Any]] = {}
    for name, case in cases.items():
        resolved = resolve(validate(copy.deepcopy(case)))
        filled[name] = {**{k: resolved[k] for k in every_key - case.keys()}, **case}
        assert resolve(validate(copy.deepcopy(filled[name]))) == resolved, name
    first = next(iter(filled.values()))
    keys = sorted(k for k in first if any(case[k] != first[k] for case in filled.values()))
    root.mkdir(parents=True, exist_ok=True)
    (root / "base.yaml").write_text(yaml.safe_dump(first))
    sweep = root / "pairs.yaml"
    zipped = {key: [case[key] for case in filled.values()] for key in keys}
    sweep.write_text(yaml.safe_dump({"name": "pairs", "base": "base.yaml",
                                     "grid": {"backend": list(BACKENDS)},
                                     "zip": zipped}))  # fmt: skip
    done = run_cli("sweep", str(sweep), "--out", str(root / "out"))
    assert "Traceback" not in done.stderr, done.stderr
    # Made outside any one test's leak check (no_leaks) when a module fixture calls this.
    assert wait_until(lambda: not _listed_processes([root]), 5.0)
    pairs: Pairs = {}
    for point in expand_sweep(load_sweep(sweep)):
        values = {k: v for k, v in point.values.items() if k != "backend"}
        (name,) = [n for n, case in filled.items() if all(case[k] == values[k] for k in keys)]
        backend = point.values["backend"]
        expected = {**resolve(validate(copy.deepcopy(cases[name]))), "name": point.run_id,
                    "backend": backend}  # fmt: skip
        pairs[(name, backend)] = (root / "out" / "pairs" / point.run_id, expected)
    assert len(pairs) == len(BACKENDS) * len(cases)
    return pairs


def pair_traces(pairs: Pairs, case: str) -> list[list[dict[str, str]]]:
    """The case's serial and processes traces (time columns left out), each from a
    completed run of exactly its config."""
    traces = []
    for backend in BACKENDS:
        run_dir, expected = pairs[(case, backend)]
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "completed", record
        assert yaml.safe_load((run_dir / "config.yaml").read_text()) == expected
        traces.append(numbers(run_dir))
    return traces
