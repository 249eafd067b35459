"""Faults are inflicted for real: worker crashes, signals, a killed coordinator, oversubscription.

After each, the run's files are inspected, and the processes and /dev/shm too: the autouse
fixture checks segments; worker pids come from run.json because CLI workers are grandchildren.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import (
    SEGMENT_GRACE_S,
    _listed_processes,
    all_gone,
    cli_output,
    leaked_segments,
    run_cli,
    signal_in_steps,
    skip_unless_available,
    start_cli,
    trace_rows,
    wait_until,
    write_config,
)

from parsgd.data.shared import live_segments
from parsgd.engine.rundir import read_trace
from parsgd.engine.worker import FAULT_ENV, wait_for_start
from tests.helpers import numbers


def _long_config(tmp_path: Path, **sections: object) -> Path:
    """A run of several seconds with frequent meetings, so signals land mid-run."""
    defaults: dict[str, object] = {
        "trials": 2,
        "sgd": {"steps": 4_000_000, "step_size": 0.01},
        "averaging": {"every": 500},
        "eval": {"every": 200_000},
        "checkpoint": {"every": 40},
    }
    defaults.update(sections)
    return write_config(tmp_path / "long.yaml", **defaults)


FAULTS = [
    ("raise", "raised RuntimeError: injected fault"),
    ("exit3", "exited with status 3"),
    ("os_exit0", "exited with status 0 before finishing"),
    ("sigkill", "killed by SIGKILL"),
    ("segfault", "killed by SIGSEGV"),
]


@pytest.mark.parametrize(("kind", "cause"), FAULTS, ids=[k for k, _ in FAULTS])
def test_worker_fault_fails_the_run_and_names_worker_and_cause(
    tmp_path: Path, kind: str, cause: str
) -> None:
    config = write_config(tmp_path / "c.yaml", sgd={"steps": 3000}, eval={"every": 100})
    # A hang would hit run_cli's timeout: no wall-clock assertion needed.
    done = run_cli("run", str(config), "--out", str(tmp_path), env={FAULT_ENV: f"1:1200:{kind}"})
    assert done.returncode == 1, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "failed"
    assert f"worker 1 (pid {record['pids'][1]})" in record["reason"]
    assert cause in record["reason"]
    if kind == "raise":
        assert "RuntimeError: injected fault" in record["traceback"]
        assert "injected fault" in done.stderr
    rows = read_trace(tmp_path / "t" / "trace.csv")  # readable, partial
    assert len(rows) > 0 and all(int(r["step"]) <= 1200 for r in rows)
    assert wait_until(lambda: all_gone(record["pids"]), 5)


def _start(config: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    """The run in its own process group (as a terminal's Ctrl-C would hit it); its output
    goes to files in out/logs."""
    return start_cli(
        "run", str(config), "--out", str(out), *extra, logs=out / "logs", new_session=True
    )


# _long_config: 2 trials x (4M / 200k + 1) rows.
LONG_ROWS = 42


@pytest.fixture(scope="module")
def whole_long_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of ``_long_config`` run once uninterrupted: the reference that the
    interrupted and crashed runs below must equal once resumed (they only read it)."""
    root = tmp_path_factory.mktemp("whole")
    whole = run_cli("run", str(_long_config(root)), "--out", str(root / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert trace_rows(root / "whole" / "t") == LONG_ROWS
    # Made outside any one test's leak check (no_leaks), so checked here.
    assert wait_until(lambda: not _listed_processes([root]), 5.0)
    return root / "whole" / "t"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_at_a_meeting_and_resume_reproduces_the_trace(
    tmp_path: Path, sig: signal.Signals, whole_long_run: Path
) -> None:
    config = _long_config(tmp_path)
    proc = _start(config, tmp_path / "cut")
    signal_in_steps(proc, tmp_path / "cut" / "t", sig, rows=5, group=True)
    assert proc.wait(timeout=60) == 130, cli_output(tmp_path / "cut" / "logs")
    record = json.loads((tmp_path / "cut" / "t" / "run.json").read_text())
    assert record["status"] == "interrupted" and "--resume" in record["reason"]
    assert 5 <= trace_rows(tmp_path / "cut" / "t") < LONG_ROWS  # it stopped mid-run
    assert (tmp_path / "cut" / "t" / "checkpoint.npz").exists()
    assert wait_until(lambda: all_gone(record["pids"]), 5)

    resumed = run_cli("run", str(config), "--out", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert numbers(tmp_path / "cut" / "t") == numbers(whole_long_run)
    final = json.loads((tmp_path / "cut" / "t" / "run.json").read_text())
    assert final["status"] == "completed" and final["resumed_from"] is not None
    reference = json.loads((whole_long_run / "run.json").read_text())
    assert final["trials_completed"] == reference["trials_completed"] == 2
    assert final["final_mean_over_trials"] == reference["final_mean_over_trials"]
    assert not (tmp_path / "cut" / "t" / "checkpoint.npz").exists()


def test_resume_after_a_crash_uses_the_periodic_checkpoint(
    tmp_path: Path, whole_long_run: Path
) -> None:
    config = _long_config(tmp_path)
    crashed = run_cli(
        "run", str(config), "--out", str(tmp_path / "cut"), env={FAULT_ENV: "0:3000000:sigkill"}
    )
    assert crashed.returncode == 1
    assert (tmp_path / "cut" / "t" / "checkpoint.npz").exists()
    resumed = run_cli("run", str(config), "--out", str(tmp_path / "cut"), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert numbers(tmp_path / "cut" / "t") == numbers(whole_long_run)


def test_second_signal_stops_at_once_and_frees_everything(tmp_path: Path) -> None:
    # One trial of many steps with no meeting between start and end: the first signal
    # alone would make the workers run on to the end, the second must stop them now.
    config = _long_config(
        tmp_path,
        trials=1,
        sgd={"steps": 50_000_000, "step_size": 0.01},
        averaging={"every": "end"},
        checkpoint={"every": None},
        eval={"every": 50_000_000},
    )
    proc = _start(config, tmp_path)
    signal_in_steps(proc, tmp_path / "t", signal.SIGINT, rows=1, group=True)
    # The second signal only once the first was taken (the run says so on stderr).
    assert wait_until(
        lambda: (
            "stopping at the next meeting" in cli_output(tmp_path / "logs")[1]
            or proc.poll() is not None
        ),
        60,
        0.01,
    )
    assert proc.poll() is None, "the run ended before the second signal: lengthen it"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "interrupted" and "second signal" in record["reason"]
    assert trace_rows(tmp_path / "t") == 1  # the row at step 0 only: stopped mid-trial
    assert wait_until(lambda: all_gone(record["pids"]), 5)


def test_sigkilled_coordinator_leaves_no_workers_and_no_segments(tmp_path: Path) -> None:
    before = set(live_segments())  # segments of runs elsewhere on this machine
    proc = _start(_long_config(tmp_path), tmp_path)
    signal_in_steps(proc, tmp_path / "t", signal.SIGKILL, rows=2)  # the coordinator only
    proc.wait(10)
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "running"  # killed mid-run: it never wrote its end
    assert len(record["pids"]) == 2 and 2 <= trace_rows(tmp_path / "t") < LONG_ROWS
    assert wait_until(lambda: all_gone(record["pids"]), 5), "workers outlived their coordinator"
    # Python's resource tracker unlinks the dead coordinator's segments; a later run would too.
    assert wait_until(lambda: not leaked_segments(before), SEGMENT_GRACE_S)


def test_more_workers_than_cores_with_every_step_averaging(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        workers=8,
        trials=1,
        sgd={"steps": 300},
        averaging={"every": 1},
        eval={"every": 100},
    )
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "completed" and len(record["pids"]) == 8
    if psutil.cpu_count() < 8:
        assert "usable cores" in done.stderr  # warned that it will be slow


def test_next_run_removes_segments_of_dead_coordinators(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    # An unlocked segment in today's format (a lock-less old-style name proves nothing).
    stale = Path("/dev/shm") / f"parsgd_{int(dead.stdout)}_0_Ldeadbeef"
    stale.write_bytes(b"\0" * 64)
    config = write_config(tmp_path / "c.yaml", trials=1, sgd={"steps": 50})
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    # Gone. (log.txt names it, unless another parsgd run on this machine got there first.)
    assert not stale.exists()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only): room to start a run, not to finish its trace."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    reason = None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"
    skip_unless_available("tmpfs", reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_during_a_run_ends_it_failed_with_a_readable_record(
    tmp_path: Path, tiny_disk: Path
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        trials=1,
        sgd={"steps": 40_000},
        averaging={"every": 100},
        eval={"every": 1},
    )
    done = run_cli("run", str(config), "--out", str(tiny_disk))
    assert done.returncode == 1, done.stderr
    record = json.loads((tiny_disk / "t" / "run.json").read_text())
    assert record["status"] == "failed" and "No space left on device" in record["reason"]
    assert len(read_trace(tiny_disk / "t" / "trace.csv")) > 100
    assert wait_until(lambda: all_gone(record["pids"]), 5)


def _held_worker(control: np.ndarray, parent: int) -> None:
    wait_for_start(control, parent)


def test_workers_held_at_the_start_go_when_released_or_aborted_and_see_a_dead_parent() -> None:
    """The MPI node's start gate: a forked process waits while HOLD is set, starts when it is
    cleared (or the run is aborted), and does not wait on for a parent that is gone."""
    import multiprocessing

    from parsgd.data.shared import SharedArena
    from parsgd.engine.control import ABORT, HOLD, N_CONTROL
    from parsgd.engine.loop import ParentGone

    context = multiprocessing.get_context("fork")
    arena = SharedArena()
    try:
        for release in (HOLD, ABORT):
            control = arena.zeros((N_CONTROL,), np.int64)
            control[HOLD] = 1
            child = context.Process(target=_held_worker, args=(control, os.getpid()))
            child.start()
            child.join(0.5)
            assert child.is_alive()  # held
            if release == HOLD:
                control[HOLD] = 0  # MPI is up
            else:
                control[ABORT] = 1  # a peer failed meanwhile
            child.join(5.0)
            assert child.exitcode == 0, release
        control = np.zeros(N_CONTROL, dtype=np.int64)
        control[HOLD] = 1
        with pytest.raises(ParentGone):
            wait_for_start(control, parent=os.getppid() + 1)  # not this process's parent
        control[HOLD] = 0
        wait_for_start(control, parent=0)  # not held: returns at once
    finally:
        arena.close()
