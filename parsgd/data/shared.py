"""Where arrays live: private memory for the serial backend, shared memory for processes.

Only the coordinator creates and unlinks segments; forked workers inherit the mappings and
never unlink. The creator holds an OFD lock (``parsgd.locks``) on each segment for as long
as it or a forked worker lives, so a later run removes exactly the segments nobody holds:
those of a coordinator that was SIGKILLed (``remove_stale_segments``). A pid in the name
proves nothing where ``/dev/shm`` is shared between containers (another PID namespace), so
it is only there for people reading ``ls /dev/shm``. Python's resource tracker also unlinks
the segments of a coordinator that dies while the tracker survives.

Space: tmpfs allocates a segment's pages only when they are first written, and a write
that finds ``/dev/shm`` full kills the process with SIGBUS. So each segment's pages are
allocated when it is created (``posix_fallocate``): a full ``/dev/shm`` is then a DataError
naming the size needed and the size free, before any results file is written.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from parsgd.errors import DataError
from parsgd.locks import lock_fd

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

    def unlink_names(self) -> None:
        pass


class SharedArena:
    """Allocates arrays in POSIX shared memory and unlinks them all on ``close``."""

    shared = True
    _counter = itertools.count()

    def __init__(self) -> None:
        self._segments: list[shared_memory.SharedMemory] = []
        self._locks: list[int] = []  # one descriptor per segment, holding its lock
        self.nbytes = 0  # allocated so far

    def empty(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize)
        _check_room(self.nbytes, nbytes)
        while True:  # a new name if a cleaner removed the segment before we locked it
            name = f"{PREFIX}{os.getpid()}_{next(self._counter)}_{_LOCKED}{secrets.token_hex(4)}"
            segment = shared_memory.SharedMemory(name=name, create=True, size=nbytes)
            fd = _lock_segment(name)
            if fd is not None:
                break
            segment.close()
        self._segments.append(segment)
        self._locks.append(fd)
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except OSError as exc:
            self.close()
            raise DataError(_no_room(self.nbytes + nbytes, exc)) from None
        self.nbytes += nbytes
        return np.ndarray(shape, dtype=dtype, buffer=segment.buf)

    def zeros(self, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        array = self.empty(shape, dtype)
        array.fill(0)
        return array

    def unlink_names(self) -> None:
        """Unlink every segment's name now, keeping the mappings (the processes that need
        them have them: forked workers). Nothing can then be left in /dev/shm if this
        process is killed; ``close`` still releases the rest."""
        for segment in self._segments:
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()

    def close(self) -> None:
        """Unlink every segment. Safe to call twice; never raises for a missing segment."""
        for segment in self._segments:
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
            # numpy views may still point into the mapping; it then goes with the process.
            with contextlib.suppress(BufferError):
                segment.close()
        self._segments.clear()
        for fd in self._locks:
            os.close(fd)
        self._locks.clear()


# Marks segments created with a lock (older parsgd versions made none): only these are
# ever judged stale.
_LOCKED = "L"


def _lock_segment(name: str) -> int | None:
    """Lock the segment just created; None if it was removed in between (then retry)."""
    path = _SHM_DIR / name
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    if lock_fd(fd) and _same_file(fd, path):
        return fd
    os.close(fd)
    return None


def _same_file(fd: int, path: Path) -> bool:
    """True if ``path`` still names the file open on ``fd`` (nobody unlinked it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def shm_free() -> int | None:
    """Bytes free in /dev/shm (None where it cannot be asked: posix_fallocate still checks)."""
    try:
        stats = os.statvfs(_SHM_DIR)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _no_room(needed: int, exc: OSError | None = None) -> str:
    why = f" ({exc.strerror})" if exc is not None and exc.errno != errno.ENOSPC else ""
    free = shm_free()
    shown = "?" if free is None else _gib(free)
    return (
        f"/dev/shm has {shown} free but this run needs at least {_gib(needed)} "
        f"there for its data and models{why}; use a smaller data set, fewer workers, "
        "backend: serial, or a larger /dev/shm (docker run --shm-size)"
    )


def _check_room(allocated: int, nbytes: int) -> None:
    free = shm_free()
    if free is not None and nbytes > free:
        raise DataError(_no_room(allocated + nbytes))


def remove_stale_segments() -> list[str]:
    """Unlink the parsgd segments that no live process holds. Returns the names removed.

    A segment counts as dead only if this process can take its lock, which no live holder
    (in any PID namespace) allows; it is unlinked while locked, so its creator, which checks
    that its segment still exists once it holds the lock, never keeps a removed one.
    """
    removed: list[str] = []
    if not _SHM_DIR.is_dir():
        return removed
    for path in _SHM_DIR.glob(f"{PREFIX}*_{_LOCKED}*"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if lock_fd(fd) and _same_file(fd, path):
                path.unlink()
                removed.append(path.name)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def live_segments() -> list[str]:
    """Names of the parsgd segments present now (tests use it to prove nothing leaked)."""
    if not _SHM_DIR.is_dir():
        return []
    return sorted(path.name for path in _SHM_DIR.glob(f"{PREFIX}*"))
