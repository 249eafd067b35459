"""Small helpers shared by the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parsgd.config.load import apply_overrides, resolve, validate
from parsgd.engine.rundir import read_trace

TIME_COLUMNS = ("wall_s", "compute_s", "sync_wait_s")


def make_config(**overrides: Any) -> dict[str, Any]:
    """A small resolved config; keyword names use '__' for dots (sgd__steps=100)."""
    base = [
        "name=t",
        "seed=3",
        "trials=2",
        "workers=2",
        "data.n=2000",
        "data.d=8",
        "data.noise=0.3",
        "sgd.steps=400",
        "sgd.step_size=0.05",
        "averaging.every=10",
        "eval.every=50",
    ]
    extra = [f"{key.replace('__', '.')}={value}" for key, value in overrides.items()]
    return resolve(validate(apply_overrides({}, base + extra)))


def numbers(run_dir: Path) -> list[dict[str, str]]:
    """The trace without its time columns: what must agree bit for bit between runs."""
    return [
        {k: v for k, v in row.items() if k not in TIME_COLUMNS}
        for row in read_trace(run_dir / "trace.csv")
    ]
