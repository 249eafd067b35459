"""Wall-clock time projected onto a network: `--network latency_us=50,bandwidth_gbps=10,nodes=8`.

A run on one shared-memory node measures what a cluster cannot change, each worker's compute
time (the trace's ``compute_s``), and what it can, the cost of an averaging round. The
projection keeps the first and replaces the second: at every trace row

    projected_s = compute_s + global rounds x round_s(global) + local rounds x round_s(local)

with the standard alpha-beta cost of a ring all-reduce of the model (8 d bytes) over p ranks,
``2 (p - 1) alpha + 2 (p - 1) / p x bytes / beta``. The run's workers (``nodes x workers``
of its config) are spread evenly over the projected nodes: a global round all-reduces within
each node (the ``local_*`` level: shared memory, by default 1 us and 100 Gb/s) and then
across the nodes (``latency_us``, ``bandwidth_gbps``); where the run has a hierarchy (a
``syncs_global`` column) its local rounds pay the local level only, else every round is
global. ``calibrate=FILE`` fits alpha and beta to the MPI Allreduce rows of a
``parsgd bench --json FILE`` instead of typed numbers. It is a projection, and figures and
tables say so: it ignores stragglers, overlap of compute and communication, and contention.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from parsgd.analysis.runs import Run
from parsgd.config.kind_specs import (
    LINEAR_OBJECTIVES,
    DataSpec,
    ObjectiveSpec,
    PcaObjective,
    QuadraticObjective,
    SyntheticData,
)
from parsgd.config.spec import RunSpec
from parsgd.errors import ConfigError

_KEYS = ("latency_us", "bandwidth_gbps", "nodes", "local_latency_us", "local_bandwidth_gbps", "d")
_MPI_ROW = re.compile(r"M=(\d+) d=([0-9.e+]+)")


@dataclass(frozen=True)
class Network:
    """Two levels of alpha-beta links: across nodes, and within a node."""

    latency_s: float
    bandwidth_bytes_s: float
    nodes: int
    local_latency_s: float = 1e-6
    local_bandwidth_bytes_s: float = 100e9 / 8
    model_size: int | None = None  # d; None: from the run's problem
    source: str = ""  # how alpha and beta were had, for labels

    @property
    def text(self) -> str:
        """``8 nodes, 50 us, 10 Gb/s``: for titles and headings."""
        return (
            f"{self.nodes} nodes, {self.latency_s * 1e6:.3g} us, "
            f"{self.bandwidth_bytes_s * 8 / 1e9:.3g} Gb/s{self.source}"
        )

    def round_s(self, d: int, ranks: int, global_round: bool) -> float:
        """Seconds of one averaging round of ``d`` doubles among ``ranks`` workers."""
        nbytes = 8.0 * d
        per_node = max(1, -(-ranks // self.nodes))
        cost = ring_allreduce_s(
            per_node, nbytes, self.local_latency_s, self.local_bandwidth_bytes_s
        )
        if global_round:
            cost += ring_allreduce_s(
                min(self.nodes, ranks), nbytes, self.latency_s, self.bandwidth_bytes_s
            )
        return cost


def ring_allreduce_s(
    ranks: int, nbytes: float, latency_s: float, bandwidth_bytes_s: float
) -> float:
    """Alpha-beta cost of a ring all-reduce: 2(p-1) alpha + 2(p-1)/p bytes / beta."""
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) * latency_s + 2 * (ranks - 1) / ranks * nbytes / bandwidth_bytes_s


def parse_network(text: str) -> Network:
    """``latency_us=50,bandwidth_gbps=10,nodes=8`` or ``calibrate=bench.json,nodes=8``
    (optional ``local_latency_us``, ``local_bandwidth_gbps``, ``d``)."""
    fields: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in (*_KEYS, "calibrate"):
            raise ConfigError(
                f"--network takes KEY=VALUE pairs from {', '.join((*_KEYS, 'calibrate'))} "
                f"(e.g. latency_us=50,bandwidth_gbps=10,nodes=8); got {part.strip()!r}"
            )
        fields[key] = value.strip()
    numbers: dict[str, float] = {}
    for key, value in fields.items():
        if key == "calibrate":
            continue
        try:
            numbers[key] = float(value)
        except ValueError:
            raise ConfigError(f"--network {key} must be a number; got {value!r}") from None
        if not numbers[key] > 0:
            raise ConfigError(f"--network {key} must be > 0; got {value}")
    if "nodes" not in numbers or not float(numbers["nodes"]).is_integer():
        raise ConfigError("--network needs nodes=N, a whole number of nodes")
    source = ""
    if "calibrate" in fields:
        latency_s, bandwidth = calibrate(Path(fields["calibrate"]))
        source = f" (alpha, beta fit to {Path(fields['calibrate']).name})"
    else:
        missing = [k for k in ("latency_us", "bandwidth_gbps") if k not in numbers]
        if missing:
            raise ConfigError(f"--network needs {' and '.join(missing)} (or calibrate=FILE)")
        latency_s, bandwidth = numbers["latency_us"] * 1e-6, numbers["bandwidth_gbps"] * 1e9 / 8
    return Network(
        latency_s=latency_s,
        bandwidth_bytes_s=bandwidth,
        nodes=int(numbers["nodes"]),
        local_latency_s=numbers.get("local_latency_us", 1.0) * 1e-6,
        local_bandwidth_bytes_s=numbers.get("local_bandwidth_gbps", 100.0) * 1e9 / 8,
        model_size=int(numbers["d"]) if "d" in numbers else None,
        source=source,
    )


def calibrate(path: Path) -> tuple[float, float]:
    """(alpha seconds, beta bytes/s) fit by least squares to the MPI Allreduce rows of a
    ``parsgd bench --json`` file (``averaging round M=2 d=...`` against ``MPI Allreduce``)."""
    try:
        rows = json.loads(path.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"--network calibrate={path}: not a parsgd bench JSON file ({exc})"
        ) from None
    design, seconds = [], []
    for row in rows:
        match = _MPI_ROW.search(str(row.get("measure", "")))
        if not match or not str(row.get("baseline", "")).startswith("MPI Allreduce"):
            continue
        if not isinstance(row.get("baseline_value"), (int, float)):
            continue
        ranks, nbytes = int(match.group(1)), 8.0 * float(match.group(2))
        design.append([2 * (ranks - 1), 2 * (ranks - 1) / ranks * nbytes])
        seconds.append(row["baseline_value"] * (1e-6 if row.get("unit") == "us" else 1.0))
    if len(design) < 2:
        raise ConfigError(f"--network calibrate={path}: fewer than two MPI Allreduce rows")
    (alpha, inverse_beta), *_ = np.linalg.lstsq(np.array(design), np.array(seconds), rcond=None)
    if not (alpha > 0 and inverse_beta > 0):
        raise ConfigError(f"--network calibrate={path}: the MPI rows give no positive alpha, beta")
    return float(alpha), float(1.0 / inverse_beta)


def project_runs(
    runs: Sequence[Run], network: Network, sizes: dict[Path, int] | None = None
) -> list[Run]:
    """The runs with ``wall_s`` replaced by the projected seconds at every trace row, so
    curves, times to target and reports read the projection like a measurement."""
    out = []
    for run in runs:
        d = network.model_size or (sizes or {}).get(run.directory) or model_size(run)
        ranks = _spec(run).ranks
        trace = dict(run.trace)
        syncs = trace["syncs"]
        global_syncs = trace.get("syncs_global", syncs)
        global_syncs = np.where(np.isfinite(global_syncs), global_syncs, syncs)
        trace["wall_s"] = (
            trace["compute_s"]
            + global_syncs * network.round_s(d, ranks, True)
            + (syncs - global_syncs) * network.round_s(d, ranks, False)
        )
        out.append(replace(run, trace=trace))
    return out


_SIZES: dict[tuple[DataSpec, ObjectiveSpec, int], int] = {}


def model_size(run: Run) -> int:
    """d, the length of the averaged model: from run.json where recorded, else by building
    the run's problem (data and objective) once per distinct setting."""
    recorded = run.record.get("model_size")
    if isinstance(recorded, int):
        return recorded
    spec = _spec(run)
    data, objective = spec.data, spec.objective
    if isinstance(objective, QuadraticObjective):
        return objective.d
    linear = (*LINEAR_OBJECTIVES, PcaObjective)
    if isinstance(objective, linear) and isinstance(data, SyntheticData):
        return data.d  # synthetic data: the model has one weight per feature
    key = (data, objective, spec.seed)  # the sections are frozen: they are their own key
    if key not in _SIZES:
        from parsgd.data.shared import LocalArena
        from parsgd.problems.registry import build_problem

        _SIZES[key] = int(build_problem(spec, LocalArena()).d)
    return _SIZES[key]


def _spec(run: Run) -> RunSpec:
    if run.spec is None:
        raise ConfigError(
            f"{run.directory}/config.yaml no longer validates: cannot project its wall time"
        )
    return run.spec
