"""Shared fixtures: run the CLI as a user does, and prove nothing leaks after each test.

Real parts the suite needs from the machine (a SLURM cluster, MPI, a tmpfs mount) skip with
their reason when absent, unless ``PARSGD_REQUIRE`` names them (``slurm``, ``mpi``, ``tmpfs``,
comma-separated; CI names all three): then their absence fails the test, so CI cannot pass
without them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
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

if __name__ != "conftest":  # a second copy would have its own list of CLI runs to check
    raise ImportError("import this module as `conftest` (pytest's copy), not as " + __name__)

ROOT = Path(__file__).resolve().parent.parent

# A suite started in the background by a non-interactive shell (``cmd &``, a CI script's
# job) inherits SIGINT ignored, since bash ignores it for asynchronous commands, and so
# would every run it starts, which then rightly keeps it ignored (as Python does). The
# SIGINT tests stand for a terminal's Ctrl-C: the suite takes Ctrl-C back, and the runs it
# starts begin with SIGINT at its default (a handler, unlike SIG_IGN, is reset by exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
REQUIRE_ENV = "PARSGD_REQUIRE"

# Where the current test's runs wrote (its tmp_path, each CLI --out): see no_leaks.
_cli_outs: list[Path] = []


def required_parts() -> set[str]:
    """The real parts named in ``PARSGD_REQUIRE`` (comma-separated, case and spaces ignored)."""
    raw = os.environ.get(REQUIRE_ENV, "")
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def skip_unless_available(part: str, reason: str | None) -> None:
    """Skip the test because ``part`` is missing (``reason``), or fail if it is required.

    Every fixture or test that would skip for want of a real part calls this, so that
    ``PARSGD_REQUIRE`` turns each such skip into a failure. ``reason=None``: available.
    """
    if reason is None:
        return
    if part in required_parts():
        pytest.fail(f"{part} is required ({REQUIRE_ENV}) but unavailable: {reason}", False)
    pytest.skip(f"{part}: {reason}")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``parsgd ARGS`` in a subprocess, from the repository root.

    The ``--out`` directory is remembered: after the test, ``no_leaks`` checks that no
    process a run.json under it lists is still alive.
    """
    if "--out" in args[:-1]:
        _cli_outs.append(Path(args[args.index("--out") + 1]))
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "parsgd", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``parsgd ARGS`` by the CLI's own ``main`` in this process, from the repository root,
    its output captured; returned as ``run_cli`` returns it.

    For bad input that must end before anything starts (exit 2, one line): the same parse,
    load and checks as a subprocess, without its seconds of interpreter start-up and imports.
    Each family of such errors keeps one ``run_cli`` test, which proves the command-line path
    (the installed entry point, a real exit status, nothing else printed to stderr). A
    traceback here is an exception in the test, so it fails as a subprocess's would.
    """
    from parsgd.cli import main

    if "--out" in args[:-1]:
        _cli_outs.append(Path(args[args.index("--out") + 1]))
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(ROOT),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["parsgd", *args], status, stdout.getvalue(),
                                       stderr.getvalue())  # fmt: skip


def start_cli(*args: str, logs: Path, new_session: bool = False) -> subprocess.Popen[str]:
    """``parsgd ARGS`` started in the background; its stdout and stderr go to files in
    ``logs`` (read them with ``cli_output``), so a test can wait on what it has printed."""
    if "--out" in args[:-1]:
        _cli_outs.append(Path(args[args.index("--out") + 1]))
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "stdout", "w") as stdout, open(logs / "stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "parsgd", *args],
            cwd=ROOT,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=new_session,  # its own process group, as Ctrl-C in a terminal
        )


def cli_output(logs: Path) -> tuple[str, str]:
    """What a ``start_cli`` process has printed so far: (stdout, stderr)."""
    return (logs / "stdout").read_text(), (logs / "stderr").read_text()


def trace_rows(run_dir: Path) -> int:
    """Data rows the run in ``run_dir`` has written to trace.csv so far."""
    try:
        return max(len((run_dir / "trace.csv").read_text().splitlines()) - 1, 0)
    except FileNotFoundError:
        return 0


def signal_in_steps(
    proc: subprocess.Popen[str], run_dir: Path, sig: int, rows: int = 2, group: bool = False
) -> None:
    """Send ``sig`` once the run has written ``rows`` trace rows, that is once it is in its
    steps, and assert it was still running then: no test races a run to its end. Give such
    a run seconds of steps, and assert afterwards that its trace is incomplete."""
    reached = wait_until(lambda: trace_rows(run_dir) >= rows or proc.poll() is not None, 120, 0.01)
    assert reached and proc.poll() is None, "the run ended before it was signalled: lengthen it"
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


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


def all_gone(pids: list[int]) -> bool:
    """True when none of ``pids`` is alive (exited, or a zombie awaiting its parent)."""

    def dead(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(dead(pid) for pid in pids)


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# The longest files, longest first, by their measured time (`--durations`, 2026-12-02, one
# test process): under `-n 2` a file runs whole in one test process (`--dist loadfile`), and
# with `--no-loadscope-reorder` (pyproject) the files are handed out in this order, so the
# long ones start first and neither process is left running a long file alone at the end.
# RUN_APART's files count as one (192 s together).
LONG_FILES = (
    "test_slurm.py", "test_mpi.py", "test_bench.py", "test_meetings.py", "test_reproduce.py",
    "test_sweep.py", "test_cli_features.py", "test_reliability_runs.py", "test_sparse.py",
    "test_reliability_results.py", "test_data_files.py", "test_faults.py",
    "test_analysis_sweeps.py", "test_hetero_quadratic.py", "test_plot.py", "test_softmax.py",
    "test_quadratic.py", "test_momentum.py", "test_objectives_cli.py", "test_hetero_data.py",
)  # fmt: skip

# Files that share one test process under `-n 2`, one after the other, so that they never run
# at the same time: the SLURM cluster's two-node MPI steps and the mpiexec tests. (A two-node
# srun test once failed with a malformed PMI2 request while the other process ran MPI; that
# cause is fixed, but two MPI jobs of several ranks each on 2 cores only slow each other.)
RUN_APART = frozenset({"test_slurm.py", "test_mpi.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run LONG_FILES first, in that order; each file's tests stay together and in order."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), order[id(item)]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``-n N --dist loadfile``: xdist's file-by-file scheduling, with RUN_APART's files
    one unit of work (so one test process runs them in turn). Other ``--dist``: xdist's own."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesWithRunApartTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "run-apart" if Path(scope).name in RUN_APART else scope

    return FilesWithRunApartTogether(config, log)


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Optima solved in a test go to a per-session cache, never the user's ~/.cache/parsgd."""
    root = tmp_path_factory.getbasetemp() / "parsgd-cache"
    monkeypatch.setenv("PARSGD_CACHE", str(root))


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test: no child process of ours alive, no process a run listed alive, no
    new parsgd shared-memory segment.

    A CLI run's workers are grandchildren of pytest, reparented to init once the coordinator
    exits, so descendants alone would miss them: the pids every run.json lists (under the
    test's tmp_path, and under every ``--out`` given to ``run_cli``) are checked too.
    """
    before = set(live_segments())
    _cli_outs.clear()
    if "tmp_path" in request.fixturenames:
        _cli_outs.append(request.getfixturevalue("tmp_path"))
    yield
    me = psutil.Process()
    assert wait_until(lambda: not [c for c in me.children(recursive=True) if _alive(c)], 5.0), (
        f"live children: {me.children(recursive=True)}"
    )
    listed = _listed_processes(_cli_outs)
    assert wait_until(lambda: not [p for p in listed if _alive(p)], 5.0), (
        f"processes listed in a run.json still alive: {[p for p in listed if _alive(p)]}"
    )
    assert wait_until(lambda: not leaked_segments(before), SEGMENT_GRACE_S), (
        f"leaked shared-memory segments: {leaked_segments(before)}"
    )


# /dev/shm is machine-wide: under ``-n 2`` (pytest-xdist) the other worker's test may, for a
# moment, hold a segment of a process it has just killed (a SIGKILLed coordinator's, until the
# resource tracker unlinks it; a planted stale one, until the next run removes it). A leak is
# one that stays: waiting longer only delays the verdict on a real leak, it never hides one.
SEGMENT_GRACE_S = 30.0


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


def _listed_processes(roots: list[Path]) -> list[psutil.Process]:
    """The coordinator and workers every run.json under ``roots`` lists, that still exist.

    Pids are recycled quickly on a busy machine, so a pid counts as the run's process only
    if that process started before its run.json was last written (the run's end; psutil's
    start times are to about a second) and its command line names the root it was found
    under (a coordinator's ``--out`` or config path; workers are forks, with the same line).
    """
    found: dict[int, psutil.Process] = {}
    for root in roots:
        if not root.is_dir():
            continue
        names = {str(root), str(root.resolve())}
        for record_path in root.rglob("run.json"):
            try:
                record = json.loads(record_path.read_text())
                written = record_path.stat().st_mtime
            except (OSError, ValueError):
                continue  # torn or gone: a fault test's business, not this check's
            if not isinstance(record, dict):
                continue
            for pid in [*record.get("pids", []), record.get("coordinator_pid")]:
                if not isinstance(pid, int) or pid == os.getpid() or pid in found:
                    continue
                try:
                    proc = psutil.Process(pid)
                    line = " ".join(proc.cmdline())
                    if proc.create_time() <= written + 1.0 and any(n in line for n in names):
                        found[pid] = proc
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
    return list(found.values())


def _alive(proc: psutil.Process) -> bool:
    """A live child, not counting multiprocessing's resource tracker (it lives per session)."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not any("resource_tracker" in part for part in proc.cmdline())
    except psutil.NoSuchProcess:
        return False
