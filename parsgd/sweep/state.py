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
from typing import Any

from parsgd.engine.rundir import (
    cell,
    create_run_file,
    lock_held,
    open_run_file,
    try_lock,
    write_atomic,
)
from parsgd.errors import ConfigError
from parsgd.sweep.spec import Point, value_text

PLAN_FILE = "sweep.json"
INDEX_FILE = "index.csv"
_LOCK_FILE = ".sweep.lock"
CLAIM_FILE = ".claim"
SOURCE_FILE = ".source"

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


def claim_sweep_dir(sweep_dir: Path, source: Path, record_it: bool = True) -> None:
    """Refuse a sweep directory that another sweep file (with the same name) already uses.

    Two sweep files named alike would otherwise replace each other's sweep.json and
    index.csv. The first to run records its file in ``.source`` (``record_it=False``: only
    check, writing nothing).
    """
    record = sweep_dir / SOURCE_FILE
    if not record_it:
        if record.is_file() and record.read_text().strip() != str(source):
            claim_sweep_dir(sweep_dir, source)  # raises, naming the other file
        return
    with sweep_lock(sweep_dir):
        if record.is_file():
            other = record.read_text().strip()
            if other != str(source):
                raise ConfigError(
                    f"{sweep_dir} holds the sweep of another file, {other}, with the same "
                    f"name; give {source.name} another name or --out"
                )
            return
        write_atomic(record, f"{source}\n".encode())


def read_plan(sweep_dir: Path) -> tuple[list[str], list[Point]]:
    plan = json.loads((sweep_dir / PLAN_FILE).read_text())
    return plan["keys"], [Point.from_json(p) for p in plan["points"]]


def _lock_held(run_dir: Path) -> bool:
    """True if a live process holds the run's lock (RunDirectory.claim) or a sweep's claim.

    ``lock_held`` asks without taking the lock, so this probe (``--status``, an index
    rebuild) never makes a genuine claim fail.
    """
    return any(lock_held(run_dir / name) for name in (".lock", CLAIM_FILE))


class RunClaim:
    """A sweep's exclusive claim on one point, held while its run process works on it.

    Every sweep process (local or an array task) takes it before starting a point and reads
    the run's state only once it holds it, so two sweeps sharing a directory never run the
    same point at once, nor redo one the other has just completed.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = try_lock(self.run_dir / CLAIM_FILE)
        return self._fd is not None

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def run_state(sweep_dir: Path, point: Point) -> RunState:
    run_dir = sweep_dir / point.run_id
    try:
        record: Any = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):  # missing, or damaged: judged as never finished
        record = None
    if not isinstance(record, dict):
        return RunState(point, "running" if _lock_held(run_dir) else "pending", {})
    if record.get("config_hash") != point.spec.config_hash:
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
    fd = open_run_file(sweep_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


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
    create_run_file(tmp, text.encode())  # O_EXCL, O_NOFOLLOW: never through a symlink
    os.replace(tmp, path)


def read_index(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
