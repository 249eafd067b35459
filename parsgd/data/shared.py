"""Where arrays live: private memory for the serial backend, shared memory for processes.

Only the coordinator creates and unlinks segments; forked workers inherit the mappings and
never unlink. Segment names carry the creator's pid (``parsgd_<pid>_<n>_<token>``) so that a
later run can remove the segments of a coordinator that was SIGKILLed (see
``remove_stale_segments``); Python's resource tracker also unlinks them when the coordinator
dies while the tracker survives.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import psutil

PREFIX = "parsgd_"
_SHM_DIR = Path("/dev/shm")


class LocalArena:
    """Allocates ordinary private arrays (serial backend)."""

    shared = False

    def empty(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        return np.zeros(shape, dtype=dtype)

    def close(self) -> None:
        pass


class SharedArena:
    """Allocates arrays in POSIX shared memory and unlinks them all on ``close``."""

    shared = True
    _counter = itertools.count()

    def __init__(self) -> None:
        self._segments: list[shared_memory.SharedMemory] = []

    def empty(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        name = f"{PREFIX}{os.getpid()}_{next(self._counter)}_{secrets.token_hex(4)}"
        segment = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
        self._segments.append(segment)
        return np.ndarray(shape, dtype=dtype, buffer=segment.buf)

    def zeros(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        array = self.empty(shape, dtype)
        array.fill(0)
        return array

    def close(self) -> None:
        """Unlink every segment. Safe to call twice; never raises for a missing segment."""
        for segment in self._segments:
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
            # numpy views may still point into the mapping; it then goes with the process.
            with contextlib.suppress(BufferError):
                segment.close()
        self._segments.clear()


def remove_stale_segments() -> list[str]:
    """Unlink parsgd segments whose creating process is gone. Returns the names removed."""
    removed: list[str] = []
    if not _SHM_DIR.is_dir():
        return removed
    for path in _SHM_DIR.glob(f"{PREFIX}*"):
        pid_text = path.name[len(PREFIX) :].split("_", 1)[0]
        if not pid_text.isdigit() or psutil.pid_exists(int(pid_text)):
            continue
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    return removed


def live_segments() -> list[str]:
    """Names of the parsgd segments present now (tests use it to prove nothing leaked)."""
    if not _SHM_DIR.is_dir():
        return []
    return sorted(path.name for path in _SHM_DIR.glob(f"{PREFIX}*"))
