"""The processes backend: the coordinator owns the worker processes and waits on them.

Data flow:

    coordinator: data + team state in shared memory, kernels compiled, then fork M workers
    worker r:    local steps on W[r] -> spin barrier -> average chunk r -> barrier -> settle
    worker 0:    at recording meetings sends a trace row; at checkpoints the averaged model
    coordinator: appends rows to the trace, writes checkpoints, watches for deaths

What could deadlock, and why it does not: a worker waiting at a barrier for a dead peer (the
coordinator sees the death through the process sentinel, sets the abort flag, which the
barrier checks, and kills whoever is still computing after a grace period); the coordinator
waiting on a silent worker (it waits on pipes and sentinels together, never on one pipe); a
worker outliving the coordinator (PR_SET_PDEATHSIG, and the barrier checks the parent pid).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from parsgd.engine.signals import signals_blocked
from parsgd.engine.team import ABORT, Outcome, Position, Team
from parsgd.engine.worker import worker_main
from parsgd.errors import WorkerCrashed, WorkerError

log = logging.getLogger("parsgd.coordinator")

_POLL_S = 0.1
_GRACE_S = 1.0


class Sink:
    """Where the coordinator delivers rank 0's results (the runner's collector)."""

    def row(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        raise NotImplementedError

    def started(self, pids: list[int]) -> None:
        raise NotImplementedError


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "is still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode} before finishing"


class Coordinator:
    def __init__(self, team: Team, start: Position, sink: Sink) -> None:
        self.team, self.start, self.sink = team, start, sink
        self.workers = team.settings.workers
        self._procs: list[Any] = []

    def run(self) -> tuple[Outcome, list[dict[str, float]]]:
        """Run every trial on M worker processes; return the outcome and each rank's timings."""
        context = multiprocessing.get_context("fork")
        receivers: list[Connection] = []
        try:
            for rank in range(self.workers):
                receiver, sender = context.Pipe(duplex=False)
                proc = context.Process(
                    target=worker_main,
                    args=(self.team, rank, sender, os.getpid(), self.start),
                    name=f"worker-{rank}",
                    daemon=True,
                )
                with signals_blocked():
                    proc.start()
                sender.close()
                receivers.append(receiver)
                self._procs.append(proc)
            self.sink.started([proc.pid for proc in self._procs])
            log.info("started %d workers: pids %s", self.workers, [p.pid for p in self._procs])
            return self._collect(receivers)
        finally:
            self._stop_all()
            for receiver in receivers:
                receiver.close()

    def _collect(self, receivers: list[Connection]) -> tuple[Outcome, list[dict[str, float]]]:
        finished: dict[int, tuple[Outcome, dict[str, float]]] = {}
        by_conn = {id(conn): rank for rank, conn in enumerate(receivers)}
        by_sentinel = {proc.sentinel: rank for rank, proc in enumerate(self._procs)}
        while len(finished) < self.workers:
            waitables: list[Any] = [c for r, c in enumerate(receivers) if r not in finished]
            waitables += [p.sentinel for r, p in enumerate(self._procs) if r not in finished]
            for ready in wait(waitables, timeout=_POLL_S):
                if isinstance(ready, Connection):
                    self._drain(by_conn[id(ready)], ready, finished)
                else:
                    rank = by_sentinel[ready]
                    self._drain(rank, receivers[rank], finished)
                    if rank not in finished:
                        self._crashed(rank)
        outcomes = [finished[r][0] for r in range(self.workers)]
        if len({(o.status, o.trial, o.step) for o in outcomes}) != 1:
            raise WorkerError(f"workers disagree on how the run ended: {outcomes}")
        return outcomes[0], [finished[r][1] for r in range(self.workers)]

    def _drain(
        self, rank: int, conn: Connection, finished: dict[int, tuple[Outcome, dict[str, float]]]
    ) -> None:
        while True:
            try:
                if not conn.poll():
                    return
                message = conn.recv()
            except (EOFError, OSError):
                return  # the worker closed its end: its sentinel tells how it ended
            # Outside the try: a failure to write results (disk full) must fail the run.
            self._handle(rank, message, finished)

    def _handle(
        self, rank: int, message: tuple[Any, ...], finished: dict[int, tuple[Outcome, dict]]
    ) -> None:
        kind = message[0]
        if kind == "row":
            self.sink.row(message[1])
        elif kind == "checkpoint":
            _, trial, step, wall_s, avg = message
            self.sink.checkpoint(trial, step, wall_s, np.tile(avg, (self.team.state.W.shape[0], 1)))
        elif kind == "done":
            finished[rank] = (message[1], message[2])
        elif kind == "aborted":
            raise WorkerCrashed(f"worker {rank} was stopped after a peer failed")
        elif kind == "error":
            pid = self._procs[rank].pid
            step = int(self.team.state.position[rank])
            raise WorkerError(
                f"worker {rank} (pid {pid}) raised {message[1]} after step {step}", message[2]
            )

    def _crashed(self, rank: int) -> None:
        proc = self._procs[rank]
        proc.join(_GRACE_S)
        step = int(self.team.state.position[rank])
        raise WorkerCrashed(
            f"worker {rank} (pid {proc.pid}) {describe_exit(proc.exitcode)} at step {step}"
        )

    def _stop_all(self) -> None:
        """Make every worker exit: abort flag, a grace period, then SIGKILL. Always joins."""
        self.team.state.control[ABORT] = 1
        deadline = time.monotonic() + _GRACE_S
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join(_GRACE_S)
