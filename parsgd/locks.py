"""Exclusive locks that can be asked about without being taken (Linux OFD locks).

``flock`` has no "is it held?" question: a probe must take the lock, and a genuine claim
racing with the probe then fails. An open-file-description lock (``F_OFD_SETLK``) has one,
``F_OFD_GETLK``. Like ``flock`` it belongs to the open file, is shared by forked children
and goes when the last descriptor is closed (or its processes die), and it works across
PID namespaces, which a pid in a file name does not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

# struct flock as Linux lays it out on 64-bit machines: type, whence, start, len, pid.
_FLOCK = "hhqqi4x"


def _request(kind: int) -> bytes:
    return struct.pack(_FLOCK, kind, os.SEEK_SET, 0, 0, 0)


def lock_fd(fd: int) -> bool:
    """Lock the whole file open on ``fd`` exclusively; False if another open file holds it."""
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _request(fcntl.F_WRLCK))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def fd_locked_elsewhere(fd: int) -> bool:
    """True if an open file other than ``fd``'s holds a lock on the file; takes nothing."""
    answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _request(fcntl.F_WRLCK))
    return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)


def is_locked(path: Path) -> bool:
    """True if some process holds a lock on ``path``; never follows a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a symlink: nobody's lock
        return False
    try:
        return fd_locked_elsewhere(fd)
    finally:
        os.close(fd)
