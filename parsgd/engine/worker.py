"""One worker process: attach to the team's shared arrays, run its rank, report back.

Workers are forked by the coordinator after the data, the team state and the compiled kernels
exist, so they inherit the shared mappings (no copy, no re-compile). A worker never unlinks
shared memory, ignores SIGINT/SIGTERM/SIGUSR1 (the coordinator decides when to stop, at a meeting)
and dies with its parent (PR_SET_PDEATHSIG), so a SIGKILLed coordinator leaves no orphans.
"""

from __future__ import annotations

import ctypes
import faulthandler
import logging
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from parsgd.engine.plan import Meeting
from parsgd.engine.signals import STOP_SIGNALS
from parsgd.engine.team import ABORT, Hooks, Position, Team, run_ranks

log = logging.getLogger("parsgd.worker")

# Spin this many checks before yielding the core; after _SLEEP_AFTER_S of waiting, sleep
# between checks so that more workers than cores still make progress.
_SPINS_BEFORE_YIELD = 200
_SLEEP_AFTER_S = 0.002
_SLEEP_S = 0.0002

# Test hook: PARSGD_FAULT="rank:step:kind" makes that worker fail at that step.
FAULT_ENV = "PARSGD_FAULT"


class Aborted(Exception):
    """The coordinator asked every worker to stop now (a peer died)."""


class ParentGone(Exception):
    """The coordinator died."""


class SpinBarrier:
    """All-to-all barrier on per-rank generation counters in shared memory.

    Each rank writes only its own slot, then waits until every slot has reached its
    generation. Measured (benchmark) at about 1 us for 2 processes against ~170 us for
    ``multiprocessing.Barrier``. It checks the abort flag and the parent while it waits,
    so no rank waits forever on a dead peer. Ordering relies on x86-64 keeping stores in
    order (TSO): the phase's writes are visible before the counter that announces them.
    """

    def __init__(self, arrive: np.ndarray, control: np.ndarray, rank: int, parent: int) -> None:
        self.arrive, self.control, self.rank, self.parent = arrive, control, rank, parent
        self.generation = int(arrive[rank])

    def __call__(self) -> None:
        self.generation += 1
        generation = self.generation
        arrive = self.arrive
        arrive[self.rank] = generation
        spins = 0
        started = 0.0
        while arrive.min() < generation:
            spins += 1
            if spins < _SPINS_BEFORE_YIELD:
                continue
            if self.control[ABORT]:
                raise Aborted
            if started == 0.0:
                started = time.perf_counter()
            elif time.perf_counter() - started > _SLEEP_AFTER_S:
                if os.getppid() != self.parent:
                    raise ParentGone
                time.sleep(_SLEEP_S)
                continue
            os.sched_yield()


class _WorkerHooks(Hooks):
    def __init__(self, team: Team, rank: int, conn: Connection, fault: tuple[int, int, str] | None):
        self.team, self.rank, self.conn, self.fault = team, rank, conn, fault
        # An injected fault must fire at its exact meeting, so no rank takes the compiled path.
        # Every rank must decide alike: the two paths write the average differently, and a
        # run mixing them would compute wrong averages.
        self.per_meeting = bool(os.environ.get(FAULT_ENV))

    def row(self, row: dict[str, Any]) -> None:
        self.conn.send(("row", row))

    def checkpoint(self, trial: int, meeting: Meeting, wall_s: float) -> None:
        # After averaging every row equals avg, so one row is the whole model table.
        self.conn.send(("checkpoint", trial, meeting.step, wall_s, self.team.state.avg.copy()))

    def trial_done(self, trial: int) -> None:
        log.info("worker %d finished trial %d", self.rank, trial)

    def meeting(self, trial: int, step: int) -> None:
        if self.fault is not None and step >= self.fault[1]:
            _inflict(self.fault[2])


def _parse_fault(rank: int) -> tuple[int, int, str] | None:
    spec = os.environ.get(FAULT_ENV, "")
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) != rank:
        return None
    return rank, int(parts[1]), parts[2]


def _inflict(kind: str) -> None:
    if kind == "raise":
        raise RuntimeError("injected fault")
    if kind == "exit3":
        sys.exit(3)
    if kind == "os_exit0":
        os._exit(0)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    raise ValueError(f"unknown fault {kind}")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def worker_main(team: Team, rank: int, conn: Connection, parent: int, start: Position) -> None:
    """Entry point of a forked worker; exits 0 after reporting, 1 after an error."""
    faulthandler.enable()
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    log.info("worker %d started (pid %d)", rank, os.getpid())
    barrier = SpinBarrier(team.state.arrive, team.state.control, rank, parent)
    hooks = _WorkerHooks(team, rank, conn, _parse_fault(rank))
    try:
        outcome = run_ranks(team, [rank], barrier, start, hooks)
        conn.send(("done", outcome, team.timings(rank)))
    except (Aborted, ParentGone):
        conn.send(("aborted",))
    except SystemExit as exc:  # sys.exit() in a worker: let its status speak for it
        conn.close()
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException as exc:  # report everything, then exit non-zero
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            os._exit(1)
    finally:
        conn.close()
