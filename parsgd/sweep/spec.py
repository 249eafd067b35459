"""A sweep file and its expansion into points: pure, no files written, nothing run.

A sweep names a base config (``base: path`` or ``config:`` inline) and the axes to vary:

    name: averaging
    base: ../quickstart.yaml
    grid: {averaging.every: [1, 10, 100, end], sgd.step_size: [0.01, 0.02, 0.05]}
    zip:  {data.noise: [0.1, 0.5], data.d: [10, 20]}    # varied together, one axis
    seeds: [0, 1]                                       # one more axis, over ``seed``
    trials: 4                                           # trials per run

Points are the cartesian product of the grid axes (in the order given, the last varying
fastest), then the zip axis, then the seeds. Every point is validated and resolved before
anything runs; its run id is ``<readable label>-<config hash[:8]>``, so the same point gets
the same directory however often (and wherever) the sweep runs.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parsgd.compact import compact_value
from parsgd.config.files import absolute_path, anchor_data_path, load_yaml
from parsgd.config.limits import sweep_size_error
from parsgd.config.load import (
    apply_overrides,
    set_dotted,
    spec_of_raw,
    spec_of_saved,
    unknown_key,
)
from parsgd.config.schema import show
from parsgd.config.spec import RunSpec
from parsgd.errors import ConfigError
from parsgd.sweep.sbatch import check_settings

_SWEEP_KEYS = ("name", "base", "config", "set", "grid", "zip", "seeds", "trials", "slurm")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LABEL_MAX = 48


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: the base config (raw, unvalidated) and the axes over dotted keys."""

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    zip: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] | None = None
    source: Path | None = None  # the sweep file (one sweep directory belongs to one file)
    slurm: dict[str, Any] = field(default_factory=dict)  # sbatch settings, checked (sbatch.py)

    @property
    def keys(self) -> list[str]:
        """The swept dotted keys, in the order of the index columns."""
        return [*self.grid, *self.zip, *(["seed"] if self.seeds is not None else [])]


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its swept values and its spec (whose ``name`` is the run id)."""

    index: int
    values: dict[str, Any]
    spec: RunSpec

    @property
    def run_id(self) -> str:
        return self.spec.name

    def to_json(self) -> dict[str, Any]:
        """The point as the sweep plan and SLURM task files hold it: the resolved config."""
        return {"index": self.index, "values": self.values, "config": self.spec.to_dict()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Point:
        """A point read back from a plan a sweep wrote (perhaps an earlier parsgd)."""
        return cls(data["index"], data["values"], spec_of_saved(data["config"]))


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file (not its points: see ``expand_sweep``)."""
    path = Path(path)
    raw = load_yaml(path)
    for key in raw:
        if key not in _SWEEP_KEYS:
            raise ConfigError(
                f"{path}: " + unknown_key("", str(key), list(_SWEEP_KEYS), "sweep key")
            )
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: name must be a name of letters, digits, '.', '_', '-'; got {show(name)}"
        )
    if ("base" in raw) == ("config" in raw):
        raise ConfigError(f"{path}: give exactly one of base (a config file) or config (inline)")
    # Relative paths mean what they mean to ``parsgd run``: a base config's are relative to
    # the base file, and those written in the sweep file (inline config, set, grid, zip)
    # relative to the sweep file.
    here = path.resolve().parent
    if "base" in raw:
        base_path = _base_path(path, raw["base"])
        base = load_yaml(base_path)
        anchor_data_path(base, base_path.resolve().parent)
    else:
        base = raw["config"]
        if not isinstance(base, dict):
            raise ConfigError(f"{path}: config must be a mapping of config keys; got {show(base)}")
    overrides = raw.get("set", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"{path}: set must be a list of dotted.key=value strings")
    base = apply_overrides(base, overrides)
    anchor_data_path(base, here)
    if "trials" in raw:
        base["trials"] = raw["trials"]
    grid = _axes(path, "grid", raw.get("grid", {}))
    zipped = _axes(path, "zip", raw.get("zip", {}))
    for axes in (grid, zipped):
        if "data.path" in axes:
            axes["data.path"] = [_anchored(value, here) for value in axes["data.path"]]
    if len({len(values) for values in zipped.values()}) > 1:
        lengths = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise ConfigError(f"{path}: zip lists must have equal lengths; got {lengths}")
    both = sorted(set(grid) & set(zipped))
    if both:
        raise ConfigError(f"{path}: {both[0]} is in both grid and zip; put it in one")
    seeds = raw.get("seeds")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds:
            raise ConfigError(f"{path}: seeds must be a non-empty list of integers >= 0")
        if "seed" in grid or "seed" in zipped:
            raise ConfigError(f"{path}: seed is swept twice (seeds and grid/zip); keep one")
    if not grid and not zipped and seeds is None:
        raise ConfigError(f"{path}: the sweep is empty: give grid, zip or seeds (non-empty lists)")
    axis_lengths = [len(values) for values in grid.values()]
    if zipped:
        axis_lengths.append(len(next(iter(zipped.values()))))
    if seeds is not None:
        axis_lengths.append(len(seeds))
    too_big = sweep_size_error(axis_lengths)
    if too_big:
        raise ConfigError(f"{path}: {too_big}")
    slurm = raw.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise ConfigError(f"{path}: slurm must be a mapping of SLURM settings; got {show(slurm)}")
    check_settings(slurm, f"{path}: slurm.")
    return Sweep(
        name=name,
        base=base,
        grid=grid,
        zip=zipped,
        seeds=seeds,
        slurm=slurm,
        source=path.resolve(),
    )


def _anchored(value: Any, directory: Path) -> Any:
    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
        return str(absolute_path(directory / Path(value).expanduser()))
    return value


def _base_path(sweep_path: Path, base: Any) -> Path:
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{sweep_path}: base must be the path of a config file; got {show(base)}")
    relative = sweep_path.parent / base
    return relative if relative.exists() or Path(base).is_absolute() else Path(base)


def _axes(path: Path, section: str, raw: Any) -> dict[str, list[Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {section} must be a mapping of dotted keys to lists of values")
    axes: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if not isinstance(key, str) or not all(key.split(".")):
            raise ConfigError(f"{path}: {section} key {show(key)} must be a dotted config key")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{path}: {section}.{key} must be a non-empty list of values; got {show(values)}"
            )
        axes[key] = values
    return axes


def _combinations(sweep: Sweep) -> list[dict[str, Any]]:
    axes: list[list[dict[str, Any]]] = [
        [{key: value} for value in values] for key, values in sweep.grid.items()
    ]
    if sweep.zip:
        length = len(next(iter(sweep.zip.values())))
        axes.append([{k: v[i] for k, v in sweep.zip.items()} for i in range(length)])
    if sweep.seeds is not None:
        axes.append([{"seed": seed} for seed in sweep.seeds])
    return [{k: v for part in combo for k, v in part.items()} for combo in itertools.product(*axes)]


def describe_values(values: dict[str, Any]) -> str:
    """``averaging.every=10, sgd.step_size=0.05``: how a point is named in messages."""
    return ", ".join(f"{key}={value_text(value)}" for key, value in values.items())


def value_text(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def make_run_id(values: dict[str, Any], spec: RunSpec) -> str:
    """``every10-step_size0.05-1a2b3c4d``: readable, and unique through the config hash."""
    # Dicts and lists read as inverse(eta0=0.002,t0=1000); scalars as before (stable ids).
    parts = [
        key.rsplit(".", 1)[-1]
        + (compact_value(value, ",") if isinstance(value, (dict, list)) else value_text(value))
        for key, value in values.items()
    ]
    label = re.sub(r"[^A-Za-z0-9._]+", "_", "-".join(parts)).strip("_.-")
    if len(label) > _LABEL_MAX:  # cut between words, never inside a number (t0_1000, not t0_10)
        cut = max(label.rfind(c, 0, _LABEL_MAX + 1) for c in "_-")
        label = label[: cut if cut > 0 else _LABEL_MAX].strip("_.-")
    digest = spec.config_hash[:8]
    return f"{label}-{digest}" if label else digest


def expand_sweep(sweep: Sweep, workers: int | None = None) -> list[Point]:
    """Validate and resolve every point; raise one ConfigError naming the first bad point.

    ``workers``: what ``workers: auto`` resolves to (the CPUs each run will get, which on a
    SLURM submit host are ``--cpus-per-task``, not this machine's); None: this machine's.
    """
    combos = _combinations(sweep)
    points: list[Point] = []
    failures: list[str] = []
    for index, values in enumerate(combos):
        raw = copy.deepcopy(sweep.base)
        try:
            for key, value in values.items():
                _set_swept(raw, key, value)
            spec = spec_of_raw(raw, auto_workers=workers)
        except ConfigError as exc:
            failures.append(
                f"sweep point {index + 1} of {len(combos)} ({describe_values(values)}): {exc}"
            )
            continue
        points.append(Point(index, values, spec.renamed(make_run_id(values, spec))))
    if failures:
        more = f" (and {len(failures) - 1} more bad points)" if len(failures) > 1 else ""
        raise ConfigError(failures[0] + more)
    seen: dict[str, int] = {}
    for point in points:
        if point.run_id in seen:
            raise ConfigError(
                f"sweep points {seen[point.run_id] + 1} and {point.index + 1} are the same run "
                f"({describe_values(point.values)}); remove the duplicate value"
            )
        seen[point.run_id] = point.index
    return points


def _set_swept(raw: dict[str, Any], key: str, value: Any) -> None:
    try:
        set_dotted(raw, key, copy.deepcopy(value))
    except ConfigError:
        parent = key.rsplit(".", 1)[0]
        raise ConfigError(f"cannot set {key}: {parent} is not a section") from None
