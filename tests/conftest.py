"""Shared fixtures: run the CLI as a user does, and prove nothing leaks after each test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from parsgd.data.shared import live_segments

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``parsgd ARGS`` in a subprocess, from the repository root."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "parsgd", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def write_config(path: Path, **sections: Any) -> Path:
    """A small, fast least-squares config with the given sections replaced."""
    config: dict[str, Any] = {
        "name": "t",
        "seed": 3,
        "trials": 2,
        "workers": 2,
        "data": {"kind": "gaussian_linear", "n": 2000, "d": 8, "noise": 0.3},
        "sgd": {"steps": 400, "step_size": 0.05},
        "averaging": {"every": 10},
        "eval": {"every": 50},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))
    return path


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optima solved in a test go to a per-session cache, never the user's ~/.cache/parsgd."""
    root = tmp_path_factory.getbasetemp() / "parsgd-cache"
    monkeypatch.setenv("PARSGD_CACHE", str(root))


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """After every test: no child process of ours alive, no new parsgd shared-memory segment."""
    before = set(live_segments())
    yield
    me = psutil.Process()
    assert wait_until(lambda: not [c for c in me.children(recursive=True) if _alive(c)], 5.0), (
        f"live children: {me.children(recursive=True)}"
    )
    assert wait_until(lambda: not leaked_segments(before), 5.0), (
        f"leaked shared-memory segments: {leaked_segments(before)}"
    )


def leaked_segments(before: set[str]) -> list[str]:
    """New parsgd segments created by this process or by a process that is gone.

    Segments of live processes of others (a run in another terminal) are not ours to judge.
    """
    leaked = []
    for name in set(live_segments()) - before:
        pid = int(name.split("_")[1])
        if pid == os.getpid() or not psutil.pid_exists(pid):
            leaked.append(name)
    return sorted(leaked)


def _alive(proc: psutil.Process) -> bool:
    """A live child, not counting multiprocessing's resource tracker (it lives per session)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not any("resource_tracker" in part for part in proc.cmdline())
    except psutil.NoSuchProcess:
        return False
