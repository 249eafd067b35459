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

from parsgd.engine.control import ABORT, HOLD
from parsgd.engine.loop import Aborted, Hooks, ParentGone, Position, Stalled, run_ranks
from parsgd.engine.messages import Checkpoint, Done, Failed, Row, Stopped
from parsgd.engine.signals import STOP_SIGNALS
from parsgd.engine.team import Team

log = logging.getLogger("parsgd.worker")

# Test hook: PARSGD_FAULT="rank:step:kind" makes that worker fail at that step, on the
# compiled path every run takes (the block ends before that meeting's local steps).
FAULT_ENV = "PARSGD_FAULT"


class _WorkerHooks(Hooks):
    def __init__(self, rank: int, conn: Connection, fault: str) -> None:
        self.rank, self.conn, self.fault_kind = rank, conn, fault

    def row(self, row: dict[str, Any]) -> None:
        self.conn.send(Row(row))

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        self.conn.send(Checkpoint(trial, step, wall_s, W))

    def trial_done(self, trial: int) -> None:
        log.info("worker %d finished trial %d", self.rank, trial)

    def fault(self) -> None:
        _inflict(self.fault_kind)


def parse_fault(rank: int) -> tuple[int, str]:
    """(step, kind) of this rank's injected fault, or (-1, "") without one."""
    parts = os.environ.get(FAULT_ENV, "").split(":")
    if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) != rank:
        return -1, ""
    return int(parts[1]), parts[2]


def _inflict(kind: str) -> None:
    if kind == "raise":
        raise RuntimeError("injected fault")
    if kind == "exit3":
        sys.exit(3)
    if kind == "os_exit0":
        os._exit(0)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sigstop":
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    if kind == "segfault":
        ctypes.string_at(0)
    raise ValueError(f"unknown fault {kind}")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def wait_for_start(control: np.ndarray, parent: int) -> None:
    """Sleep while the coordinator holds the start (``HOLD``): an MPI node's rank runs
    MPI_Init after forking its workers, and on a machine with a core per worker, workers
    stepping meanwhile would share their cores with it (~80 ms here). A millisecond's
    sleep at a time: the start is not worth a spinning core."""
    while control[HOLD] and not control[ABORT]:
        if os.getppid() != parent:
            raise ParentGone("the start")
        time.sleep(0.001)


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
    fault_step, fault_kind = parse_fault(rank)
    hooks = _WorkerHooks(rank, conn, fault_kind)
    try:
        wait_for_start(team.state.control, parent)
        outcome = run_ranks(team, [rank], start, hooks, True, parent, fault_step)
        conn.send(Done(outcome, team.timings(rank)))
    except Aborted:
        conn.send(Stopped("a peer failed"))
    except ParentGone:
        conn.send(Stopped("the coordinator is gone"))
    except Stalled as exc:
        conn.send(Stopped(f"a peer never reached the {exc} after the stop request"))
    except SystemExit as exc:  # sys.exit() in a worker: let its status speak for it
        conn.close()
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException as exc:  # report everything, then exit non-zero
        try:
            conn.send(Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        finally:
            os._exit(1)
    finally:
        conn.close()
