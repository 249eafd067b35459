"""The results directory of one run: config.yaml, run.json, trace.csv, log.txt, checkpoint.

Small files are written to a temporary name and ``os.replace``d, so a reader never sees half
of one; the trace is append-only and flushed row by row. A lock file held with ``flock`` for
the run's lifetime keeps two runs from writing into one directory.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from parsgd.errors import ConfigError

TRACE_COLUMNS = (
    "trial",
    "step",
    "samples",
    "syncs",
    "wall_s",
    "loss",
    "loss_workers_mean",
    "variance",
    "gap",
    "dist_opt_sq",
    "subopt",
    "compute_s",
    "sync_wait_s",
    # Groups of workers (``nodes``): global averaging rounds done, the mean squared distance
    # of workers to their node's average and of node averages to the global average.
    "syncs_global",
    "spread_within_nodes",
    "spread_between_nodes",
    # Filled only where the problem has them (held-out split, PCA); empty otherwise.
    "test_loss",
    "test_accuracy",
    "alignment",
)

# A run refuses to start with less free space than this, and sets this much aside so that
# the final run.json can still be written if the disk fills up during the run.
_MIN_FREE_BYTES = 2**20
_RESERVE_BYTES = 64 * 2**10

RESULT_FILES = ("config.yaml", "run.json", "trace.csv", "log.txt", "checkpoint.npz")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_writable(directory: Path) -> None:
    """Fail early (ConfigError) if ``directory`` cannot be created or written to."""
    probe = directory
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"output path {probe} exists and is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {probe} is not writable")
    if shutil.disk_usage(probe).free < _MIN_FREE_BYTES:
        raise ConfigError(f"output directory {probe} has less than 1 MiB free")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same double
    return str(value)


class TraceWriter:
    """Appends rows to trace.csv and flushes each one."""

    def __init__(self, path: Path, keep_rows: int | None) -> None:
        if keep_rows is None or not path.exists():
            self._file: IO[str] = path.open("w", newline="")
            self._file.write(",".join(TRACE_COLUMNS) + "\n")
            self.rows = 0
        else:
            lines = path.read_text().splitlines(keepends=True)[: keep_rows + 1]
            write_atomic(path, "".join(lines).encode())
            self._file = path.open("a", newline="")
            self.rows = len(lines) - 1
        self._file.flush()

    def append(self, row: dict[str, Any]) -> None:
        self._file.write(",".join(_cell(row[c]) for c in TRACE_COLUMNS) + "\n")
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        """Close; a flush that fails (disk full) is the run's failure, already recorded."""
        with contextlib.suppress(OSError):
            self._file.close()


class RunDirectory:
    """``<out>/<name>/`` and the files in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.yaml"
        self.status_path = root / "run.json"
        self.trace_path = root / "trace.csv"
        self.log_path = root / "log.txt"
        self.checkpoint_path = root / "checkpoint.npz"
        self._lock: IO[str] | None = None

    def claim(self, fresh: bool) -> None:
        """Create the directory and lock it; a fresh run clears the files of an earlier one."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = (self.root / ".lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(f"another parsgd run is writing to {self.root}") from None
        self._lock = lock
        if fresh:
            for name in RESULT_FILES:
                (self.root / name).unlink(missing_ok=True)
        (self.root / ".reserve").write_bytes(b"\0" * _RESERVE_BYTES)

    def free_reserve(self) -> None:
        """Give back the space set aside, just before the final run.json is written."""
        (self.root / ".reserve").unlink(missing_ok=True)

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def write_json(self, record: dict[str, Any]) -> None:
        write_atomic(self.status_path, (json.dumps(record, indent=2) + "\n").encode())

    def read_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.status_path.read_text())
        return result

    def write_checkpoint(self, W: np.ndarray, meta: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, W=W, meta=np.array(json.dumps(meta)))
        write_atomic(self.checkpoint_path, buffer.getvalue())

    def read_checkpoint(self) -> tuple[np.ndarray, dict[str, Any]]:
        with np.load(self.checkpoint_path) as saved:
            return saved["W"].copy(), json.loads(str(saved["meta"]))


def read_trace(path: Path) -> list[dict[str, str]]:
    """The trace as a list of rows of strings (for tests and reports)."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
