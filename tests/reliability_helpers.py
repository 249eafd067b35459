"""What every reliability test ends with: the user's files as they were, nothing left over."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def snapshot(root: Path) -> dict[str, str]:
    """Every file below ``root`` (symlinks as their target text) -> a hash of its bytes."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(root: Path) -> list[str]:
    """Temporary files parsgd must never leave: ``.*.tmp`` and the disk-space reserve."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.name.endswith(".tmp") or p.name == ".reserve"
    )


def one_line_error(stderr: str, *words: str) -> None:
    """A single ``parsgd: error:`` line (no traceback) containing every word."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    errors = [line for line in lines if line.startswith("parsgd: error:")]
    assert len(errors) == 1, stderr[-2000:]
    for word in words:
        assert word in errors[0], errors[0]
    assert len(errors[0]) < 600, errors[0]


def start_run(config: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """``parsgd run`` in the background, in its own process group (like a terminal job).

    SIGHUP is left at its default for the run even when the suite itself was started under
    ``nohup`` (an ignored signal stays ignored across exec, and parsgd rightly keeps an
    ignored SIGHUP ignored), so the SIGHUP tests test a terminal closing, not nohup."""
    previous = signal.getsignal(signal.SIGHUP)
    if previous == signal.SIG_IGN:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "parsgd", "run", str(config), "--out", str(out), *extra],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGHUP, previous)


def trace_rows(run_dir: Path) -> int:
    path = run_dir / "trace.csv"
    return path.read_bytes().count(b"\n") - 1 if path.exists() else 0


def kill_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
