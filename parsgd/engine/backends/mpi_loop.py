"""The mpi backend's loop: one MPI rank per node runs its node's ranks; meetings span nodes.

Every rank holds the whole model table (all ``nodes x workers`` rows) but steps only its own
node's rows, with the same compiled blocks as the serial backend (``loop._Ranks``). Group
meetings stay inside the node. A meeting that reads every row (a global round, or a
recorded group round whose global average the trace reports) is run on its own: the
node's local steps up to it, then an exchange through ``MpiLink`` (every node's current rows
and its flags, Allgather in rank order), then the meeting's compiled block, which averages
all rows in its fixed order: the bits of ``serial`` with ``nodes: R``. At recording meetings
the statistics rows are exchanged too, and rank 0 writes the trace row and checkpoints.

A stop request on any rank reaches every node through the exchanged flags (as rank 0's STOP
bit), so all stop at the same global meeting. This first version runs a node's workers in
the rank's own process (as ``serial`` does); forking them per node is what is left.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from typing import Any

import numpy as np

from parsgd.engine.backends.mpi_link import MpiLink
from parsgd.engine.barrier import PAD
from parsgd.engine.control import GROUP, NONFINITE, STOP, STOP_REQUEST
from parsgd.engine.loop import Hooks, Outcome, Position, _Ranks, leader_meeting, python_meeting
from parsgd.engine.signals import signals_blocked
from parsgd.engine.team import Team

log = logging.getLogger("parsgd.mpi")


class _Exchange:
    """The collective exchanges of one node's rows, flags and statistics."""

    def __init__(self, team: Team, link: MpiLink) -> None:
        self.team, self.link = team, link
        self.per_node = team.group
        self.lo = link.rank * self.per_node
        self.hi = self.lo + self.per_node
        self.requested = False  # a stop request not yet shared with the other nodes

    def rows(self, buffer: int) -> None:
        """Every node's rows of table ``buffer`` into every rank's table (rank order)."""
        table = self.team.state.table[buffer]  # contiguous, as MPI needs: padded rows
        mine = table[self.lo : self.hi].copy()  # not a view: MPI refuses aliased buffers
        self.link.gather_rows(mine, table)

    def stats(self) -> None:
        stats = self.team.state.stats
        mine = stats[self.lo : self.hi].copy()
        self.link.gather_rows(mine, stats)

    def flags(self, run: _Ranks, side: int) -> None:
        """Publish every rank's flags where the compiled meeting reads them; any node's stop
        request becomes rank 0's STOP bit (set on node 0 through its control slot).

        Called with stop signals blocked, through the meeting's block: the control slot then
        holds exactly the agreed decision, so no late signal can make one node stop alone; a
        request that comes in later is kept for the next global meeting.
        """
        st = self.team.state
        self.requested = self.requested or st.control[STOP_REQUEST] != 0
        st.control[STOP_REQUEST] = 0
        mine = np.zeros(1 + self.per_node, dtype=np.int64)
        mine[0] = int(self.requested)
        mine[1:] = run.pending
        every = np.zeros((self.link.size, mine.size), dtype=np.int64)
        self.link.gather_rows(mine, every)
        stop = bool(every[:, 0].any())
        bits = every[:, 1:].reshape(-1)
        if stop:
            bits[0] |= STOP
            st.control[STOP_REQUEST] = 1
            self.requested = False
        for rank in range(bits.size):
            if not self.lo <= rank < self.hi:
                st.flags[side, rank * PAD] = bits[rank]


def run_mpi(team: Team, start: Position, hooks: Hooks, link: MpiLink) -> Outcome:
    """Every trial for this node's ranks; rank 0's ``hooks`` get the rows and checkpoints."""
    plan, settings = team.plan, team.settings
    exchange = _Exchange(team, link)
    ranks = list(range(exchange.lo, exchange.hi))
    run = _Ranks(team, ranks, barrier=False, parent=0)
    spans = plan.level != GROUP
    leader = link.rank == 0
    n = len(plan.steps)
    for trial in range(start.trial, settings.trials):
        resumed = trial == start.trial and start.step >= 0
        if not resumed:
            for r in range(settings.workers):  # every row, so that every table starts equal
                team.init_model(trial, r)
        first = start.step if resumed else -1
        origin = time.perf_counter() - (start.wall_s if resumed else 0.0)
        paused = 0.0
        done = max(first, 0)
        index = int(np.searchsorted(plan.steps, first, side="right"))
        while index < n:
            at_step = int(plan.steps[index])
            if spans[index]:
                while at_step > done:  # the node's local steps up to the meeting
                    stop = min(at_step, done + run.max_steps)
                    run.local(trial, index, done, stop)
                    done = stop
                _relay_logs(link)
                with signals_blocked():
                    exchange.flags(run, (trial * n + index) % 2)
                    exchange.rows(team.buffer_before(trial, index))
                    count, decision = run.block(trial, index, index + 1, done)
            else:
                while at_step - done > run.max_steps:
                    run.local(trial, index, done, done + run.max_steps)
                    done += run.max_steps
                last = int(np.searchsorted(plan.steps, done + run.max_steps, side="right"))
                later = np.flatnonzero(spans[index:])
                end = min(max(last, index + 1), index + int(later[0]) if later.size else n)
                count, decision = run.block(trial, index, end, done)
            if at_step == 0:
                origin = time.perf_counter()
            index += count
            at = index - 1
            done = int(plan.steps[at])
            if run.python[at]:
                paused += python_meeting(team, run, trial, at, origin, paused, False, hooks)
                exchange.stats()
                if leader:  # once every node's statistics are in
                    tic = time.perf_counter()
                    wall_s = tic - origin - paused
                    leader_meeting(team, run.scratch[0], trial, at, wall_s, origin + paused, hooks)
                    paused += time.perf_counter() - tic
            if decision & (NONFINITE | STOP):
                exchange.rows(team.buffer_before(trial, at + 1))  # for the checkpoint
                status = "diverged" if decision & NONFINITE else "interrupted"
                wall_s = time.perf_counter() - origin - paused
                return Outcome(status, trial, done, int(plan.syncs[at]), wall_s)
        hooks.trial_done(trial)
    return Outcome("completed", settings.trials - 1, plan.total_steps, plan.sync_count)


def gather_timings(link: MpiLink, team: Team) -> list[dict[str, Any]]:
    """Every rank's timings (all nodes), in rank order."""
    lo = link.rank * team.group
    mine = [team.timings(r) for r in range(lo, lo + team.group)]
    return [t for node in link.gather_json(mine) for t in node]


class _SinkHooks(Hooks):
    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def row(self, row: dict[str, Any]) -> None:
        self.sink.row(row)

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        self.sink.checkpoint(trial, step, wall_s, W)


def join_nodes() -> MpiLink:
    """MPI_Init (this node's data and team are ready) and the link to the other nodes."""
    from parsgd.engine.backends.mpi_setup import init_mpi

    link = MpiLink(init_mpi())
    multiprocessing.current_process().name = f"node{link.rank}"  # log.txt's tag
    return link


class _ToRankZero(logging.Handler):
    """A rank's log records, sent to rank 0 for log.txt (rank 0 re-emits them, tagged)."""

    def __init__(self, link: MpiLink) -> None:
        super().__init__(logging.INFO)
        self.link = link

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        fields = {
            "name": record.name,
            "levelno": record.levelno,
            "levelname": record.levelname,
            "msg": text,
            "created": record.created,
        }
        self.link.send_log(json.dumps(fields))  # fmt: skip


def _relay_logs(link: MpiLink) -> None:
    """On rank 0: re-emit the other ranks' records into this run's log, tagged by node."""
    if link.rank != 0:
        return
    for rank, line in link.received_logs():
        fields = json.loads(line)
        record = logging.makeLogRecord({**fields, "processName": f"node{rank}"})
        logging.getLogger(fields["name"]).handle(record)


def _announce(link: MpiLink) -> None:
    log.info(
        "node %d: rank %d of %d on host %s, pid %d",
        link.rank, link.rank, link.size, link.hosts[link.rank], os.getpid(),
    )  # fmt: skip


def _nodes(link: MpiLink) -> list[Any]:
    """Every node's host, rank and pids (collective: every rank calls it at the start)."""
    facts = {"node": link.rank, "host": link.hosts[link.rank], "rank": link.rank,
             "pid": os.getpid(), "worker_pids": [os.getpid()]}  # fmt: skip
    return link.gather_json(facts)


def _finish(team: Team, link: MpiLink) -> list[dict[str, Any]]:
    """The collective end every rank runs: every rank's timings, then close."""
    timings = gather_timings(link, team)
    link.close()
    _relay_logs(link)
    return timings


def lead(
    team: Team, start: Position, sink: Any, link: MpiLink
) -> tuple[Outcome, list[dict[str, Any]], list[Any]]:
    """Rank 0: run its node, deliver rows and checkpoints to ``sink``; outcome, every rank's
    timings, every node's host, rank and pids (for run.json)."""
    _announce(link)
    nodes = _nodes(link)
    sink.started([node["pid"] for node in nodes])
    outcome = run_mpi(team, start, _SinkHooks(sink), link)
    return outcome, _finish(team, link), nodes


def follow(team: Team, start: Position, link: MpiLink) -> str:
    """Any other rank: run its node; rank 0 writes every result. Returns the run's status."""
    handler = _ToRankZero(link)
    parsgd_log = logging.getLogger("parsgd")
    parsgd_log.setLevel(logging.INFO)
    parsgd_log.addHandler(handler)
    parsgd_log.propagate = False
    try:
        _announce(link)
        _nodes(link)
        outcome = run_mpi(team, start, Hooks(), link)
        _finish(team, link)
    finally:
        parsgd_log.removeHandler(handler)
    return outcome.status


class _MpiBackend:
    """``backend: mpi`` behind the registry's protocol: one rank per node.

    A run across nodes needs two steps the other backends do not: its set-up is checked
    before anything starts, and the ranks join before the run directory is claimed (rank 0
    alone writes results; every other rank only runs its node).
    """

    def __init__(self) -> None:
        self.link: MpiLink | None = None
        self.record: dict[str, Any] = {}

    def check_setup(self, nodes: int) -> None:
        from parsgd.engine.backends.mpi_setup import check_mpi_setup

        check_mpi_setup(nodes)

    def join(self) -> bool:
        """Join the other nodes; True on the rank that writes the results."""
        self.link = join_nodes()
        return self.link.rank == 0

    def follow(self, team: Team, start: Position) -> str:
        assert self.link is not None
        return follow(team, start, self.link)

    def run(self, team: Team, start: Position, sink: Any) -> tuple[Outcome, list[dict[str, Any]]]:
        assert self.link is not None
        outcome, timings, nodes = lead(team, start, sink, self.link)
        self.record = {"mpi_ranks": nodes}
        return outcome, timings


BACKEND = _MpiBackend()
