"""The results directory of one run: config.yaml, run.json, trace.csv, log.txt, checkpoint.

Small files are written to a temporary name and ``os.replace``d, so a reader never sees half
of one; the trace is append-only, one whole row per write. A lock (``try_lock``) held for
the run's lifetime keeps two runs from writing into one directory.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.errors import ConfigError
from parsgd.locks import is_locked, lock_fd

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
    # data.partition shards or dirichlet: the mean and the largest, over workers, of each
    # worker's loss on its own rows; empty where every worker samples the whole pool.
    "loss_own_mean",
    "loss_own_max",
)

# A run refuses to start with less free space than this, and sets this much aside so that
# the final run.json can still be written if the disk fills up during the run.
_MIN_FREE_BYTES = 2**20
_RESERVE_BYTES = 64 * 2**10

RESULT_FILES = ("config.yaml", "run.json", "trace.csv", "log.txt", "checkpoint.npz")


def open_run_file(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` for every file parsgd writes in a results directory: never through a symlink.

    A symlink planted in a run directory (``.lock -> ~/thesis.tex``) must not make a run
    truncate or overwrite the file it points to: ``O_NOFOLLOW`` refuses it (ELOOP), and a
    file that must be new is created with ``O_EXCL``. Raises ConfigError naming the file.
    """
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if path.is_symlink():
            raise ConfigError(f"{path} is a symlink; parsgd writes only plain files") from None
        raise ConfigError(f"cannot open {path}: {exc.strerror}") from None


def create_run_file(path: Path, data: bytes = b"") -> None:
    """Create ``path`` afresh (an old file or a planted symlink is removed, not followed)."""
    remove_run_file(path)
    fd = open_run_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def remove_run_file(path: Path) -> None:
    """Unlink a file (or a symlink itself); a directory in its place is a ConfigError."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot remove {path}: {exc.strerror}; move it away") from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new, never half.

    The temporary file is created with O_EXCL and O_NOFOLLOW (``mkstemp``), and
    ``os.replace`` replaces a symlink at ``path`` rather than writing through it.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.is_dir() and not path.is_symlink():
            raise ConfigError(f"{path} is a directory; move it away")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_temporaries(directory: Path) -> list[str]:
    """Remove the ``.<name>.*.tmp`` files ``write_atomic`` leaves when a process is killed.

    Called only by the holder of the directory's lock, so no writer is using them.
    """
    removed = []
    for path in directory.glob(".*.tmp"):
        if path.is_file() or path.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            removed.append(path.name)
    return removed


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


def cell(value: Any) -> str:
    """A csv cell: empty for None, floats as the shortest text that reads back exactly."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same double
    return str(value)


def try_lock(path: Path) -> int | None:
    """Open ``path`` and lock it exclusively; the descriptor (the lock lasts until it is
    closed), or None if another holder has it.

    An OFD lock (``parsgd.locks``), not ``flock``, so that ``lock_held`` can ask whether it
    is held without taking it: a probe then never makes a genuine claim fail.
    """
    fd = open_run_file(path, os.O_RDWR | os.O_CREAT)
    try:
        if lock_fd(fd):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def lock_held(path: Path) -> bool:
    """True if some process holds ``path``'s ``try_lock``; asks without locking."""
    return is_locked(path)


def _header() -> bytes:
    return (",".join(TRACE_COLUMNS) + "\n").encode()


def whole_rows_end(data: bytes, rows: int | None = None) -> tuple[int, int]:
    """(byte offset just past the last whole line, data rows before it) of a trace's bytes.

    With ``rows``: stop after that many data rows. A torn last line (no newline: the disk
    filled or the writer was killed mid-row) is not counted.
    """
    end, count, position = 0, -1, 0
    while rows is None or count < rows:
        newline = data.find(b"\n", position)
        if newline < 0:
            break
        end, position, count = newline + 1, newline + 1, count + 1
    return end, max(count, 0)


class TraceWriter:
    """Appends whole rows to trace.csv, each in one ``write``; a failed write is undone.

    The file never ends in half a row written by this process: a row that fails part way
    (disk full) is truncated away before the error propagates.
    """

    def __init__(self, path: Path, keep_rows: int | None) -> None:
        self.path = path
        if keep_rows is None or not path.exists():
            create_run_file(path, _header())
            self._fd = open_run_file(path, os.O_WRONLY | os.O_APPEND)
            self.rows = 0
        else:
            # Resuming: drop the rows written after the checkpoint, and any torn line.
            self._fd = open_run_file(path, os.O_RDWR | os.O_APPEND)
            data = _read_fd(self._fd)
            end, self.rows = whole_rows_end(data, keep_rows)
            os.ftruncate(self._fd, end)
        self._size = os.fstat(self._fd).st_size

    def append(self, row: dict[str, Any]) -> None:
        data = (",".join(cell(row[c]) for c in TRACE_COLUMNS) + "\n").encode()
        try:
            _write_all(self._fd, data)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)
        self.rows += 1

    def close(self) -> None:
        """Close; a flush that fails (disk full) is the run's failure, already recorded."""
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _read_fd(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class RunDirectory:
    """``<out>/<name>/`` and the files in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.yaml"
        self.status_path = root / "run.json"
        self.trace_path = root / "trace.csv"
        self.log_path = root / "log.txt"
        self.checkpoint_path = root / "checkpoint.npz"
        self.lock_path = root / ".lock"
        self._lock: int | None = None
        self.removed: list[str] = []  # temporaries of a killed run, removed by claim()

    def check_files(self) -> None:
        """ConfigError if a result file's name is taken by something that is not a file."""
        for name in (*RESULT_FILES, ".lock", ".reserve"):
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                raise ConfigError(f"{path} is a directory, not a parsgd file; move it away")

    def claim(self, fresh: bool) -> None:
        """Create the directory and lock it; a fresh run clears the files of an earlier one."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.check_files()
        lock = try_lock(self.lock_path)
        if lock is None:
            raise ConfigError(f"another parsgd run is writing to {self.root}")
        self._lock = lock
        try:
            self.removed = remove_temporaries(self.root)
            if fresh:
                for name in RESULT_FILES:
                    remove_run_file(self.root / name)
            create_run_file(self.root / ".reserve", b"\0" * _RESERVE_BYTES)
        except BaseException:
            self.release()
            raise

    def free_reserve(self) -> None:
        """Give back the space set aside, just before the final run.json is written."""
        with contextlib.suppress(ConfigError):
            remove_run_file(self.root / ".reserve")

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def owner_alive(self) -> bool:
        """True if a live process holds this directory's lock (a run is writing to it)."""
        return lock_held(self.lock_path)

    def write_text(self, path: Path, text: str) -> None:
        write_atomic(path, text.encode())

    def write_json(self, record: dict[str, Any]) -> None:
        write_atomic(self.status_path, (json.dumps(record, indent=2) + "\n").encode())

    def read_json(self) -> dict[str, Any]:
        """run.json; ConfigError (one line) if it is unreadable or not a JSON object."""
        return read_record(self.status_path)

    def write_checkpoint(self, W: np.ndarray, meta: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, W=W, meta=np.array(json.dumps(meta)))
        write_atomic(self.checkpoint_path, buffer.getvalue())

    def read_checkpoint(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The saved models and their meta; ConfigError (one line) for any damaged file."""
        path = self.checkpoint_path
        try:
            with np.load(path, allow_pickle=False) as saved:
                W, meta = saved["W"].copy(), json.loads(str(saved["meta"][()]))
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            raise ConfigError(
                f"{path} is damaged ({_short(exc)}); rerun with --force to start over"
            ) from None
        if not isinstance(meta, dict) or not all(
            isinstance(meta.get(key), kind) for key, kind in _CHECKPOINT_META.items()
        ):
            raise ConfigError(f"{path} is damaged (its meta record); rerun with --force")
        if W.ndim != 2 or not np.issubdtype(W.dtype, np.floating):
            raise ConfigError(
                f"{path} is damaged (models of shape {W.shape} and type {W.dtype}); "
                "rerun with --force"
            )
        return W, meta


_CHECKPOINT_META: dict[str, type | tuple[type, ...]] = {
    "trial": int,
    "step": int,
    "wall_s": (int, float),
    "trace_rows": int,
    "config_hash": str,
}


def _short(exc: BaseException, limit: int = 120) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def read_record(path: Path) -> dict[str, Any]:
    """A run.json; ConfigError (one line) if it is unreadable or not a JSON object."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable run record ({_short(exc)})") from None
    if not isinstance(record, dict):
        raise ConfigError(f"{path} is not a readable run record (not a JSON object)")
    return record


def read_trace(path: Path) -> list[dict[str, str]]:
    """The trace's whole rows as dicts of strings (for resumes, tests and reports).

    A torn last line (the disk filled, or the writer was killed mid-row) is left out and
    reported on stderr; anything else that is not a parsgd trace is one ConfigError naming
    the file and line.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    end, _ = whole_rows_end(data)
    if end < len(data) and data[end:].strip():
        print(f"parsgd: warning: {path}: torn last line left out", file=sys.stderr)
    try:
        text = data[:end].decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a parsgd trace (bytes that are not UTF-8: {exc.reason})"
        ) from None
    lines = text.splitlines()
    if not lines:
        return []
    if lines[0].split(",") != list(TRACE_COLUMNS):
        raise ConfigError(f"{path}: not a parsgd trace (its first line is not the header)")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split(",")
        if len(cells) != len(TRACE_COLUMNS) or not all(map(_is_number, cells)):
            raise ConfigError(f"{path}:{number}: not a trace row: {_cut(line)}")
        rows.append(dict(zip(TRACE_COLUMNS, cells, strict=True)))
    return rows


def _is_number(cell: str) -> bool:
    if cell == "":
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
