"""One node of ``backend: mpi``: its rank forks the node's workers, then stands in for the
other nodes at every meeting that spans them.

The node's workers are the processes backend's (``Coordinator``, forked before MPI_Init, so
no worker inherits an initialised MPI): each runs ``loop.run_ranks`` for its rank behind the
shared-memory barrier, over a model table that holds every node's rows. A meeting that spans
nodes (every level but GROUP) and the recording barrier after it wait, in ``barrier.wait``,
for every rank of the run, so also for the other nodes' ranks, whose counters no worker here
ever sets. This rank sets them, as its coordinator: once its own workers have arrived at
such a meeting (their rows and flags published), it exchanges through ``MpiLink`` -- every
node's rows of the meeting's buffer and flag words (and any node's stop request), or at a
recording barrier every node's statistics -- into the shared arrays, then releases the
barrier by storing the generation into the other nodes' counters. The workers then run the
meeting's compiled average over all rows in its fixed order: the bits of ``serial`` with
``nodes: R``. Barriers that do not span nodes are released ahead, so only spanning meetings
wait on the network.

Which barrier generation is which meeting follows from the plan alone (one barrier per
meeting, one more at each Python meeting, counted from 1 at the start), so the coordinator
never needs to be told. On one node there is nothing to exchange: the node runs exactly
as ``backend: processes`` does.

Log lines: the workers are forked before log.txt exists (rank 0 opens it once MPI is up),
so they send their records down the run log's worker pipe (``logs.WorkerLogs``) to this
rank, which hands them on between its waits (with its own from before MPI was up), tagged
``node<rank>/worker-<r>``: into log.txt on rank 0, to rank 0 through ``MpiLink.send_log``
on any other. A worker that dies ends only its part of the pipe: the pipe ends (EOF) when
the node's last worker is gone.
"""

from __future__ import annotations

import logging
import os
import queue
from collections.abc import Callable, Iterator
from logging.handlers import QueueHandler
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from parsgd.engine.backends.mpi_link import MpiLink
from parsgd.engine.barrier import FLAGS, PAD, arrived, release
from parsgd.engine.control import GROUP, HOLD, STOP, STOP_REQUEST
from parsgd.engine.coordinator import Coordinator, Sink
from parsgd.engine.logs import WorkerLogs
from parsgd.engine.loop import Outcome, Position
from parsgd.engine.plan import Cursor
from parsgd.engine.team import Team

log = logging.getLogger("parsgd.mpi")

ROWS, STATS = 0, 1  # what a spanning barrier exchanges
_WAIT_NS = 20_000_000  # longest compiled wait before pipes and heartbeats are looked at


class Due(NamedTuple):
    """A barrier the other nodes take part in."""

    generation: int
    kind: int  # ROWS (a meeting spanning nodes) or STATS (a recording barrier)
    trial: int
    meeting: int  # its index in the trial's plan


def spanning_barriers(team: Team, start: Position) -> Iterator[Due]:
    """Every barrier generation a worker waits on the other nodes at, in order, as
    ``loop.run_ranks`` counts them (from 1 at ``start``)."""
    plan = team.plan
    generation = 0
    for trial in range(start.trial, team.settings.trials):
        resumed = trial == start.trial and start.step >= 0
        index = plan.index_of(start.step, side="right") if resumed else 0
        cursor = Cursor(plan)
        while index < plan.meetings:
            w = cursor.at(index)
            for i in range(index - w.first, len(w.steps)):
                generation += 1
                if w.level[i] != GROUP:
                    yield Due(generation, ROWS, trial, w.first + i)
                if w.python[i]:
                    generation += 1
                    yield Due(generation, STATS, trial, w.first + i)
            index = w.end


def exchange_meeting(
    gather: Callable[[], None], table: np.ndarray, column: int, arrive: np.ndarray,
    control: np.ndarray, side: int, lo: int, hi: int,
) -> None:  # fmt: skip
    """A global meeting across nodes, in one message. This node's rows lo..hi-1 of the
    meeting's buffer ``table`` go to every node (``gather``, in place), each carrying in its
    spare last ``column`` the flags its rank announced (its barrier line, ``side``), with
    this node's stop request OR-ed into its first rank's. Every other node's ranks' flags
    then go into their barrier lines here, and this node's stop request into one of them,
    so that the workers' own decision (``meetings.run_block``) is every node's; the workers
    then average every node's rows themselves, in the fixed order."""
    requested = control[STOP_REQUEST] != 0
    _flags_out(table, column, arrive, FLAGS + side, lo, hi, requested)
    gather()
    _flags_in(table, column, arrive, FLAGS + side, lo, hi, requested)


# Compiled (a meeting at d = 1e3 is a few microseconds: the flags' numpy indexing was 2 us of
# it) with their signatures, so at import: before MPI_Init, never inside the heartbeats.
_FLAGS_SIGNATURE = "void(float64[:, ::1], int64, int64[::1], int64, int64, int64, boolean)"


@njit(_FLAGS_SIGNATURE, cache=True, nogil=True)
def _flags_out(
    table: np.ndarray, column: int, arrive: np.ndarray, line: int, lo: int, hi: int,
    requested: bool,
) -> None:  # fmt: skip
    for rank in range(lo, hi):
        table[rank, column] = arrive[rank * PAD + line]
    if requested:
        table[lo, column] = arrive[lo * PAD + line] | STOP


@njit(_FLAGS_SIGNATURE, cache=True, nogil=True)
def _flags_in(
    table: np.ndarray, column: int, arrive: np.ndarray, line: int, lo: int, hi: int,
    requested: bool,
) -> None:  # fmt: skip
    for rank in range(table.shape[0]):
        if lo <= rank < hi:
            continue
        arrive[rank * PAD + line] = int(table[rank, column])
    if requested:  # into the first rank of another node: this node's workers read it there
        other = hi if lo == 0 else 0
        arrive[other * PAD + line] |= STOP


class NodeCoordinator(Coordinator):
    """This node's workers, and its part in the meetings that span nodes."""

    def __init__(self, team: Team, start: Position, sink: Sink, node: int) -> None:
        per_node = team.group
        self.lo, self.hi = node * per_node, (node + 1) * per_node
        super().__init__(team, start, sink, range(self.lo, self.hi))
        self.node = node
        self.link: MpiLink | None = None
        self._worker_logs: WorkerLogs | None = None
        self._worker_records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._due = spanning_barriers(team, start)
        self._next: Due | None = None
        self.on_idle: Any = None  # called between waits (rank 0 relays log lines)
        # Compiled (or loaded from numba's cache) now, before the fork and MPI_Init: once the
        # workers run, this process shares the cores with them, and a slow first call would
        # hold back the heartbeats the other nodes wait for.
        counters = np.zeros(PAD, dtype=np.int64)
        release(counters, 0, 1, 1)
        arrived(counters, team.state.control, 1, 0, 1, 0)

    def start_workers(self) -> None:
        """Fork the node's workers, their log records coming back to this rank. This rank's
        own records while it forks (log.txt is not open yet) wait with theirs. The workers
        hold at their start until ``attach``: MPI_Init should not share their cores."""
        self.team.state.control[HOLD] = 1
        parsgd_log = logging.getLogger("parsgd")
        parsgd_log.setLevel(logging.INFO)  # as in the run log: the workers' INFO lines pass
        parsgd_log.propagate = False
        own: list[logging.Handler] = [QueueHandler(self._worker_records)]
        self._worker_logs = WorkerLogs(parsgd_log, own, self._worker_records.put)
        try:
            super().start_workers()
        finally:
            own.clear()  # from here this rank's records go to its run log, or to rank 0
            self._worker_logs.forked()

    def relay_logs(self) -> None:
        """The workers' records arrived so far, into this rank's log, tagged by node and
        worker (rank 0: log.txt; any other rank: sent on to rank 0)."""
        while True:
            try:
                record = self._worker_records.get_nowait()
            except queue.Empty:
                return
            mine = record.process == os.getpid()
            record.processName = f"node{self.node}" + ("" if mine else f"/{record.processName}")
            logging.getLogger(record.name).handle(record)

    def settle_logs(self) -> None:
        """The run is over: wait (briefly) for the workers to exit, relay their last lines."""
        if self._worker_logs is not None:
            self._worker_logs.ended()
        self.relay_logs()

    def stop(self) -> None:
        super().stop()
        if self._worker_logs is not None:
            self._worker_logs.close()

    def attach(self, link: MpiLink) -> None:
        """MPI is up: from here the coordinator answers for the other nodes."""
        self.link = link
        # Every node's rows of each buffer of the table, and of the statistics, in place.
        st = self.team.state
        self._table_gathers = [link.in_place_gather(table) for table in st.table]
        self._stats_gather = link.in_place_gather(st.stats)
        if link.size > 1:
            self._advance()
        st.control[HOLD] = 0  # MPI is up: the workers start their steps

    def _advance(self) -> None:
        self._next = next(self._due, None)
        if self._next is not None:  # barriers before it need nothing from the other nodes
            self._release(self._next.generation - 1)

    def _release(self, generation: int) -> None:
        arrive, M = self.team.state.arrive, self.team.settings.workers
        release(arrive, 0, self.lo, generation)
        release(arrive, self.hi, M, generation)

    def ready(self, waitables: list[Any]) -> list[Any]:
        from multiprocessing.connection import wait

        link = self.link
        assert link is not None
        ready: list[Any] = wait(waitables, timeout=0)
        if ready:
            return ready
        link.pump()
        self.relay_logs()
        if self.on_idle is not None:
            self.on_idle()
        due = self._next
        if due is None:
            return list(wait(waitables, timeout=link.heartbeat_s / 4))
        st = self.team.state
        if arrived(st.arrive, st.control, due.generation, self.lo, self.hi, _WAIT_NS):
            self._exchange(due)
            self._release(due.generation)
            self._advance()
        return []

    def _exchange(self, due: Due) -> None:
        team, st = self.team, self.team.state
        if due.kind == STATS:
            self._stats_gather()
            return
        side = (due.trial * team.plan.meetings + due.meeting) % 2
        assert self.link is not None and st.flag_column is not None
        buffer = team.buffer_before(due.trial, due.meeting)
        exchange_meeting(
            self._table_gathers[buffer], st.table[buffer], st.flag_column, st.arrive,
            st.control, side, self.lo, self.hi,
        )  # fmt: skip

    def models_after(self, outcome: Outcome) -> None:
        """Every node's rows after the last meeting (collective), for rank 0's checkpoint."""
        team = self.team
        index = team.plan.index_of(outcome.step)
        self._table_gathers[team.buffer_before(outcome.trial, index + 1)]()
