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
worker outliving the coordinator (PR_SET_PDEATHSIG, and the barrier checks the parent pid);
a stop request that a worker never answers (SIGSTOPped: its peers wait at a meeting for it)
-- after STOP_GRACE_S the coordinator fails the run, naming the worker, and kills them all.
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

from parsgd.engine.barrier import PAD
from parsgd.engine.control import ABORT, STOP_GRACE_S, STOP_REQUEST
from parsgd.engine.loop import Outcome, Position
from parsgd.engine.messages import Checkpoint, Done, Failed, Message, Row, Stopped
from parsgd.engine.signals import signals_blocked
from parsgd.engine.team import Team
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


def _process_state(pid: int | None) -> str:
    """The kernel's word for a process's state ("stopped" for SIGSTOP), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            code = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "state unknown"
    names = {"R": "running", "S": "sleeping", "D": "in disk wait", "T": "stopped", "t": "traced"}
    return names.get(code, f"state {code}")


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
    def __init__(self, team: Team, start: Position, sink: Sink, ranks: range | None = None) -> None:
        """``ranks``: the ranks this coordinator forks (every rank, or one node's)."""
        self.team, self.start, self.sink = team, start, sink
        self.ranks = ranks if ranks is not None else range(team.settings.workers)
        self._procs: dict[int, Any] = {}
        self._receivers: dict[int, Connection] = {}

    def run(self) -> tuple[Outcome, list[dict[str, float]]]:
        """Run every trial on M worker processes; return the outcome and each rank's timings."""
        try:
            self.start_workers()
            self.sink.started(self.pids())
            return self.collect()
        finally:
            self.stop()

    def start_workers(self) -> None:
        """Fork one worker per rank (they start their steps at once)."""
        context = multiprocessing.get_context("fork")
        for rank in self.ranks:
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
            self._receivers[rank] = receiver
            self._procs[rank] = proc
        log.info("started %d workers: pids %s", len(self.ranks), self.pids())

    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs.values()]

    def stop(self) -> None:
        """Every worker gone (see ``_stop_all``), every pipe closed; safe to call twice."""
        self._stop_all()
        for receiver in self._receivers.values():
            receiver.close()

    def collect(self) -> tuple[Outcome, list[dict[str, float]]]:
        """Wait on the workers until each has reported how the run ended."""
        receivers = self._receivers
        finished: dict[int, tuple[Outcome, dict[str, float]]] = {}
        by_conn = {id(conn): rank for rank, conn in receivers.items()}
        by_sentinel = {proc.sentinel: rank for rank, proc in self._procs.items()}
        stop_seen = 0.0
        while len(finished) < len(self.ranks):
            if self.team.state.control[STOP_REQUEST] and not stop_seen:
                stop_seen = time.monotonic()
            if stop_seen and time.monotonic() - stop_seen > STOP_GRACE_S + 2 * _POLL_S:
                self._unanswered_stop(finished)
            waitables: list[Any] = [c for r, c in receivers.items() if r not in finished]
            waitables += [p.sentinel for r, p in self._procs.items() if r not in finished]
            for ready in self.ready(waitables):
                if isinstance(ready, Connection):
                    self._drain(by_conn[id(ready)], ready, finished)
                else:
                    rank = by_sentinel[ready]
                    self._drain(rank, receivers[rank], finished)
                    if rank not in finished:
                        self._crashed(rank)
        outcomes = [finished[r][0] for r in self.ranks]
        if len({(o.status, o.trial, o.step) for o in outcomes}) != 1:
            raise WorkerError(f"workers disagree on how the run ended: {outcomes}")
        return outcomes[0], [finished[r][1] for r in self.ranks]

    def ready(self, waitables: list[Any]) -> list[Any]:
        """The pipes and sentinels ready now; waits at most a poll interval (a subclass may
        do other work between its own, shorter waits)."""
        return wait(waitables, timeout=_POLL_S)

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
        self, rank: int, message: Message, finished: dict[int, tuple[Outcome, dict[str, float]]]
    ) -> None:
        if isinstance(message, Row):
            self.sink.row(message.row)
        elif isinstance(message, Checkpoint):
            self.sink.checkpoint(message.trial, message.step, message.wall_s, message.W)
        elif isinstance(message, Done):
            finished[rank] = (message.outcome, message.timings)
        elif isinstance(message, Stopped):
            raise WorkerCrashed(f"worker {rank} was stopped: {message.reason}")
        elif isinstance(message, Failed):
            pid = self._procs[rank].pid
            step = self.team.state.position(rank)
            raise WorkerError(
                f"worker {rank} (pid {pid}) raised {message.error} after step {step}",
                message.traceback,
            )

    def _unanswered_stop(self, finished: dict[int, tuple[Outcome, dict[str, float]]]) -> None:
        """A stop request went unanswered: fail the run, naming the worker furthest behind
        (the fewest meetings announced at the barrier)."""
        waiting = [r for r in self.ranks if r not in finished]
        rank = min(waiting, key=lambda r: int(self.team.state.arrive[r * PAD]))
        proc = self._procs[rank]
        state = _process_state(proc.pid)
        raise WorkerCrashed(
            f"stop requested, but worker {rank} (pid {proc.pid}, {state}) did not reach a "
            f"meeting within {STOP_GRACE_S:g} s (last meeting at step "
            f"{self.team.state.position(rank)})"
        )

    def _crashed(self, rank: int) -> None:
        proc = self._procs[rank]
        proc.join(_GRACE_S)
        step = self.team.state.position(rank)
        raise WorkerCrashed(
            f"worker {rank} (pid {proc.pid}) {describe_exit(proc.exitcode)} at step {step}"
        )

    def _stop_all(self) -> None:
        """Make every worker exit: abort flag, a grace period, then SIGKILL. Always joins."""
        self.team.state.control[ABORT] = 1
        deadline = time.monotonic() + _GRACE_S
        for proc in self._procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(_GRACE_S)


class ProcessesBackend:
    """One process per rank under this coordinator (see ``engine.backends``)."""

    def run(
        self, team: Team, start: Position, sink: Sink
    ) -> tuple[Outcome, list[dict[str, float]]]:
        return Coordinator(team, start, sink).run()


BACKEND = ProcessesBackend()
