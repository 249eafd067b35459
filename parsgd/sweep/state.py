"""The state of a sweep on disk: its frozen plan (sweep.json), each run's status, index.csv.

The run directories are the truth; ``index.csv`` is derived from them and rewritten whole
(atomically, under a lock on the sweep directory) whenever a run ends, so that two sweeps or
two SLURM array tasks sharing a sweep directory never leave a torn or half-updated index.

Statuses: those of ``run.json`` (running, completed, failed, interrupted, diverged) plus
``pending`` (never started) and ``lost`` (``run.json`` says running but no process holds the
run's lock: its process was killed outright; a rerun resumes it from its last checkpoint).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from parsgd.config.load import config_hash
from parsgd.engine.rundir import cell, write_atomic
from parsgd.sweep.spec import Point, value_text

PLAN_FILE = "sweep.json"
INDEX_FILE = "index.csv"
_LOCK_FILE = ".sweep.lock"
CLAIM_FILE = ".claim"

# Statuses a rerun of the sweep leaves alone (unless --force).
FINISHED = ("completed", "diverged")


@dataclass(frozen=True)
class RunState:
    point: Point
    status: str
    record: dict[str, Any]

    def final(self, key: str) -> Any:
        return (self.record.get("final_mean_over_trials") or {}).get(key)


def write_plan(sweep_dir: Path, name: str, keys: list[str], points: list[Point]) -> None:
    """Freeze the expanded points next to their runs (``--status`` and SLURM tasks read it)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan = {"name": name, "keys": keys, "points": [p.to_json() for p in points]}
    write_atomic(sweep_dir / PLAN_FILE, (json.dumps(plan, indent=1) + "\n").encode())


def read_plan(sweep_dir: Path) -> tuple[list[str], list[Point]]:
    plan = json.loads((sweep_dir / PLAN_FILE).read_text())
    return plan["keys"], [Point.from_json(p) for p in plan["points"]]


def _lock_held(run_dir: Path) -> bool:
    """True if a live process holds the run's lock (RunDirectory.claim) or a sweep's claim."""
    for name in (".lock", CLAIM_FILE):
        path = run_dir / name
        if not path.exists():
            continue
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class RunClaim:
    """A sweep's exclusive claim on one point, held while its run process works on it.

    Every sweep process (local or an array task) takes it before starting a point and reads
    the run's state only once it holds it, so two sweeps sharing a directory never run the
    same point at once, nor redo one the other has just completed.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = (self.run_dir / CLAIM_FILE).open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def fileno(self) -> int:
        assert self._handle is not None
        return self._handle.fileno()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def run_state(sweep_dir: Path, point: Point) -> RunState:
    run_dir = sweep_dir / point.run_id
    try:
        record: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return RunState(point, "running" if _lock_held(run_dir) else "pending", {})
    if record.get("config_hash") != config_hash(point.config):
        return RunState(point, "pending", {})
    status = str(record.get("status", "pending"))
    if status == "running" and not _lock_held(run_dir):
        status = "lost"
    return RunState(point, status, record)


def sweep_states(sweep_dir: Path, points: list[Point]) -> list[RunState]:
    return [run_state(sweep_dir, point) for point in points]


def index_columns(keys: list[str]) -> list[str]:
    return ["run_id", "directory", *keys, "status", "final_loss", "final_dist_opt_sq", "wall_s"]


def index_text(keys: list[str], states: list[RunState]) -> str:
    """The text of index.csv: one row per point, in sweep order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(index_columns(keys))
    for state in states:
        point = state.point
        timings = state.record.get("timings") or {}
        writer.writerow(
            [
                point.run_id,
                point.run_id,
                *(value_text(point.values[key]) for key in keys),
                state.status,
                cell(state.final("loss")),
                cell(state.final("dist_opt_sq")),
                cell(timings.get("total_s")),
            ]
        )
    return buffer.getvalue()


@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Serialise index updates of every process working on this sweep directory."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with (sweep_dir / _LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_index(sweep_dir: Path, keys: list[str], points: list[Point]) -> list[RunState]:
    """Rebuild ``index.csv`` from the run directories; return the states it shows."""
    with sweep_lock(sweep_dir):
        states = sweep_states(sweep_dir, points)
        _replace(sweep_dir / INDEX_FILE, index_text(keys, states))
    return states


def _replace(path: Path, text: str) -> None:
    """Write to a temporary name and rename: readers never see half an index.

    No fsync (write_atomic's costs ~7 ms here): the index is derived from the run
    directories and rebuilt by the next sweep or ``--status`` if a crash loses it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_index(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
