"""numba's on-disk caches of the package, dropped when the compiled sources change.

numba keys a cached function by its own file's time stamp and size, not by the files of the
functions it calls and compiles into itself. ``run_block`` (engine/meetings.py) compiles in
the barrier, the step of every objective and the kernels, so after an edit to a kernel alone
it would load the old machine code from its cache. ``refresh`` runs once per process, when
``parsgd`` is imported: if any source file's stamp changed since it last looked, and the
content of the files that use numba is not what it recorded then (or nothing was recorded),
it deletes the package's cache files (``*.nbi``, ``*.nbc``) so that everything compiles
afresh. A pip install does not change its files; a checkout being edited pays one recompile
after an edit to compiled code.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_RECORD = _PACKAGE / "__pycache__" / "parsgd-jit-sources.json"


def _stamps(package: Path, sources: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sources:
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}:{stat.st_mtime_ns}:{stat.st_size}\n".encode())
    return digest.hexdigest()


def _compiled_content(package: Path, sources: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sources:
        text = path.read_bytes()
        if b"numba" in text:
            digest.update(str(path.relative_to(package)).encode() + b"\0" + text)
    return digest.hexdigest()


def refresh(package: Path = _PACKAGE, record: Path = _RECORD) -> bool:
    """Drop the caches if the compiled sources changed; True if it deleted any. A package
    directory that cannot be written (numba then caches elsewhere) is left alone."""
    try:
        sources = sorted(package.rglob("*.py"))
        stamps = _stamps(package, sources)
        if _known(record).get("stamps") == stamps:
            return False  # the common case: nothing touched, ~1 ms of stat calls
        record.parent.mkdir(exist_ok=True)  # where it cannot be written, touch nothing
        # One process at a time (the ranks of a job start together): the others wait, then
        # find the record up to date, so no process deletes caches another is writing.
        with open(record.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            known = _known(record)
            if known.get("stamps") == stamps:
                return False
            content = _compiled_content(package, sources)
            dropped = False
            if known.get("content") != content:  # changed, or unknown: may be stale
                for pattern in ("*.nbi", "*.nbc"):
                    for path in package.rglob(pattern):
                        path.unlink(missing_ok=True)
                        dropped = True
            # In place: a torn record reads as unknown, which only drops the caches again.
            record.write_text(json.dumps({"stamps": stamps, "content": content}))
            return dropped
    except OSError:
        return False


def _known(record: Path) -> dict[str, str]:
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}
