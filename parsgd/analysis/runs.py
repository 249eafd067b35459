"""Finished runs on disk, loaded and grouped for figures and reports.

A run directory holds ``config.yaml`` (the resolved config), ``run.json`` and ``trace.csv``.
A sweep directory is any directory with run directories somewhere below it; ``index.csv``
is not needed. Runs are grouped by the values of one or more dotted config keys (``--by``);
runs that share those values are pooled, so their trials count together.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.compact import compact_value
from parsgd.config.files import load_yaml
from parsgd.config.load import spec_of_saved
from parsgd.config.spec import RunSpec
from parsgd.engine.rundir import TRACE_COLUMNS, lock_held, read_trace
from parsgd.errors import ConfigError
from parsgd.schedules import AveragingSchedule

# Keys that differ between replicates of one setting (or do not change the numbers); never
# a reason, by default, for a separate curve.
_REPLICATE_KEYS = frozenset({"name", "seed", "data.seed", "trials", "backend"})


@dataclass
class Run:
    """One run directory: its resolved config, run.json and trace (one array per column).

    ``config`` is the saved mapping, for the dotted keys a user names (``--by``, ``--facet``,
    export columns); what the analysis itself needs it reads from ``spec``.
    """

    directory: Path
    config: dict[str, Any]
    record: dict[str, Any]
    trace: dict[str, np.ndarray]

    @cached_property
    def spec(self) -> RunSpec | None:
        """The run's spec; None where its config no longer validates (another version's)."""
        try:
            return spec_of_saved(self.config)
        except ConfigError:
            return None

    @property
    def trials(self) -> list[dict[str, np.ndarray]]:
        """The trace split by trial, each trial's rows in step order."""
        out = []
        for trial in np.unique(self.trace["trial"]):
            keep = self.trace["trial"] == trial
            order = np.argsort(self.trace["step"][keep], kind="stable")
            out.append({k: v[keep][order] for k, v in self.trace.items()})
        return out


@dataclass
class Group:
    """The runs that share one combination of ``--by`` values."""

    keys: tuple[str, ...]
    values: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.keys:  # nothing to tell the runs apart: name them
            names = sorted({run.directory.name for run in self.runs})
            return ", ".join(names) if len(names) <= 3 else f"{len(names)} runs pooled"
        return describe_values(self.keys, self.values, self.runs[0].spec)

    @property
    def trials(self) -> list[dict[str, np.ndarray]]:
        return [t for run in self.runs for t in run.trials]


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """Every run directory at or below ``paths`` (a trace.csv next to a config.yaml)."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        candidates = [path / "trace.csv"] if path.is_file() else sorted(path.rglob("trace.csv"))
        for trace in candidates:
            if (trace.parent / "config.yaml").is_file():
                found[trace.parent.resolve()] = None
    runs = [r for r in (_load_run(d) for d in found) if r is not None]
    if not runs:
        shown = ", ".join(str(p) for p in paths)
        raise ConfigError(f"no runs with trace rows found under {shown}")
    return runs


def _load_run(directory: Path) -> Run | None:
    config = load_yaml(directory / "config.yaml")
    try:
        record = json.loads((directory / "run.json").read_text())
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict):
        record = {}
    if record.get("status") == "running" and not lock_held(directory / ".lock"):
        record = {**record, "status": "lost"}  # its process is gone
    rows = read_trace(directory / "trace.csv")
    if not rows:
        return None
    columns = [c for c in rows[0] if c is not None]
    trace = {c: np.array([_number(row.get(c)) for row in rows]) for c in columns}
    return Run(directory, config, record, trace)


def _number(text: str | None) -> float:
    if text is None or text == "":
        return math.nan
    return float(text)


def config_value(config: dict[str, Any], key: str) -> Any:
    """``config[a][b]`` for ``key = "a.b"``; KeyError if the key is not there."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def flat_config(config: dict[str, Any]) -> dict[str, Any]:
    """``{"sgd.step_size": 0.1, ...}``: every leaf of a config under its dotted key."""
    return _flat_keys(config)


def _flat_keys(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def varying_keys(runs: Sequence[Run]) -> list[str]:
    """Dotted config keys whose values differ between runs (replicate keys left out).

    Where a grid mixes a scalar and a dict (``sgd.step_size: [0.001, {kind: inverse, ...}]``)
    a key such as ``sgd.step_size.eta0`` exists in some runs only: the key named is then the
    nearest parent every run has (``sgd.step_size``), and its whole value tells runs apart.
    """
    flats = [_flat_keys(run.config) for run in runs]
    keys = sorted({k for flat in flats for k in flat} - _REPLICATE_KEYS)
    out: list[str] = []
    for key in keys:
        if len({repr(flat.get(key)) for flat in flats}) <= 1:
            continue
        while "." in key and not all(_has_key(run.config, key) for run in runs):
            key = key.rsplit(".", 1)[0]
        if key not in out:
            out.append(key)
    return out


def _has_key(config: dict[str, Any], key: str) -> bool:
    try:
        config_value(config, key)
    except KeyError:
        return False
    return True


def parse_by(by: Sequence[str] | None) -> list[str]:
    """``--by a --by b,c`` -> ``[a, b, c]``."""
    return [k.strip() for item in by or [] for k in item.split(",") if k.strip()]


def group_runs(runs: Sequence[Run], by: Sequence[str]) -> list[Group]:
    """Pool runs by their values of ``by`` (dotted keys, comma lists allowed), readably ordered.

    Numbers come first in ascending order, then ``end`` and other text, then dicts
    (``value_order``: so ``every: 1, 10, 100, end``).
    """
    keys = tuple(parse_by(by))
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        values = []
        for key in keys:
            try:
                values.append(config_value(run.config, key))
            except KeyError:
                valid = ", ".join(sorted(_flat_keys(run.config)))
                raise ConfigError(
                    f"--by {key}: no such key in {run.directory}/config.yaml (keys: {valid})"
                ) from None
        ident = tuple(repr(v) for v in values)
        groups.setdefault(ident, Group(keys, tuple(values))).runs.append(run)
    return sorted(groups.values(), key=lambda g: tuple(value_order(v) for v in g.values))


def value_order(value: Any) -> tuple[int, str, float, str]:
    """Sort key of a swept value: numbers ascending, then ``end`` (so an averaging interval
    reads 1, 4, 16, ..., one-shot), then other text, then dicts (by kind, then their numbers),
    then booleans and None."""
    if isinstance(value, bool) or value is None:
        return (4, "", 0.0, repr(value))
    if isinstance(value, (int, float)):
        return (0, "", float(value), "")
    if value == "end":
        return (1, "", 0.0, "")
    if isinstance(value, dict):
        numbers = [v for v in value.values() if isinstance(v, (int, float))]
        return (3, str(value.get("kind", "")), float(numbers[0]) if numbers else 0.0, repr(value))
    return (2, str(value), 0.0, "")


def sort_runs(runs: Sequence[Run], keys: Sequence[str]) -> list[Run]:
    """Runs in the order of their values of ``keys`` (see ``value_order``), then by name."""

    def key(run: Run) -> tuple[Any, ...]:
        values = [config_value(run.config, k) if _has_key(run.config, k) else None for k in keys]
        return (*(value_order(v) for v in values), run.directory.name)

    return sorted(runs, key=key)


def describe_values(keys: Sequence[str], values: Sequence[Any], spec: RunSpec | None) -> str:
    """Legend text for a group: "every 10 steps", "one-shot", "workers = 4", ..."""
    schedule = None if spec is None else spec.averaging.schedule
    return ", ".join(describe_value(k, v, schedule) for k, v in zip(keys, values, strict=True))


def describe_value(key: str, value: Any, schedule: AveragingSchedule | None = None) -> str:
    """Legend text for one value; ``schedule`` (the run's) names an ``every: null`` one."""
    if key == "averaging.every":
        if value == 1:
            return "mini-batch (every step)"
        if value == "end":
            return "one-shot"
        if value is None and schedule is not None:
            return schedule.describe()
        return f"every {value} steps"
    if key == "method":
        return {"single": "single worker", "hogwild": "Hogwild!", "local_sgd": "local SGD"}.get(
            str(value), str(value)
        )
    if key == "workers":
        return f"{value} workers"
    return f"{key} = {compact_value(value)}"


def describe_interval(value: Any) -> str:
    """Short tick text for an averaging interval H: "1", "10", "one-shot"."""
    return "one-shot" if value == "end" else compact_value(value)


def check_column(runs: Sequence[Run], column: str) -> None:
    """ConfigError unless ``column`` is a trace column with a number in some run."""
    allowed = [c for c in TRACE_COLUMNS if c != "trial"]
    if column not in allowed:
        raise ConfigError(f"unknown column {column!r}; choose from {', '.join(allowed)}")
    if not any(np.isfinite(run.trace.get(column, np.array([]))).any() for run in runs):
        raise ConfigError(
            f"column {column} is empty in every run (the optimum or test split is unknown)"
        )


def final_rows(trials: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The last row of every trial, one array per column (one entry per trial)."""
    columns = trials[0].keys() if trials else []
    return {c: np.array([t[c][-1] for t in trials]) for c in columns}
