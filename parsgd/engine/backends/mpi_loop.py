"""``backend: mpi``: one MPI rank per node, which forks its node's workers, then joins MPI.

Order (see DESIGN.md): the data and the team state are in this node's shared memory, the
kernels compiled, the node's workers forked (``mpi_node.NodeCoordinator``, the processes
backend's coordinator) -- and only then MPI_Init, so that no worker inherits an initialised
MPI; workers never touch it. Every node's table holds every node's rows; at a meeting that
spans nodes the node's rank exchanges them (and flags and statistics) through ``MpiLink``
and releases its workers' barrier (see ``mpi_node``): the trace is ``serial``'s with
``nodes: R``, bit for bit.

A stop request on any rank reaches every node through the exchanged flags, so all stop at
the same global meeting. A failure on a node other than 0 (a worker dead, a peer lost) is
sent to rank 0, which records it, naming the node, the worker and the cause; the node waits
a moment for that (``_LINGER_S``), then ends. Rank 0 writes every result.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from typing import Any

from parsgd.engine.backends.mpi_link import MpiLink, where
from parsgd.engine.backends.mpi_node import NodeCoordinator
from parsgd.engine.coordinator import Sink
from parsgd.engine.loop import Outcome, Position
from parsgd.engine.team import Team
from parsgd.errors import WorkerCrashed, WorkerError

log = logging.getLogger("parsgd.mpi")


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
            "msecs": record.msecs,  # the time's milliseconds: not re-derived from "created"
            "processName": record.processName,  # node<r>, or node<r>/worker-<w> (mpi_node)
        }
        self.link.send_log(json.dumps(fields))  # fmt: skip


def _relay_logs(link: MpiLink) -> None:
    """On rank 0: re-emit the other ranks' records into this run's log, tagged by node."""
    if link.rank != 0:
        return
    for rank, line in link.received_logs():
        fields = json.loads(line)
        node = f"node{rank}"  # a worker's tag is kept only under its own node's
        tag = fields.get("processName", "")
        fields["processName"] = tag if tag.startswith(f"{node}/") else node
        record = logging.makeLogRecord(fields)
        logging.getLogger(fields["name"]).handle(record)


def _announce(link: MpiLink) -> None:
    log.info(
        "node %d: rank %d of %d on host %s, pid %d",
        link.rank, link.rank, link.size, link.hosts[link.rank], os.getpid(),
    )  # fmt: skip


def _nodes(link: MpiLink, node: NodeCoordinator) -> list[Any]:
    """Every node's host, rank and pids (collective: every rank calls it at the start)."""
    facts = {"node": link.rank, "host": link.hosts[link.rank], "rank": link.rank,
             "pid": os.getpid(), "worker_pids": node.pids()}  # fmt: skip
    return link.gather_json(facts)


def _run_node(node: NodeCoordinator, link: MpiLink) -> tuple[Outcome, list[dict[str, Any]]]:
    """The node's run to its end, then the collective end every rank runs: the last rows
    (for rank 0's checkpoint), every rank's timings in rank order, close."""
    try:
        outcome, timings = node.collect()
        node.settle_logs()
    except (WorkerCrashed, WorkerError) as exc:
        if link.rank == 0:  # rank 0 records it: name the node (others' rank 0 names)
            exc.args = (f"{where(link.rank, link.hosts[link.rank])}: {exc}",)
        raise
    if outcome.status != "completed":
        node.models_after(outcome)
    every = [t for part in link.gather_json(timings) for t in part]
    log.info(
        "node %d: longest silence of a peer %.2f s (lost after %g s)",
        link.rank, link.longest_silence_s, link.timeout_s,
    )  # fmt: skip
    link.close()
    _relay_logs(link)
    return outcome, every


def lead(
    node: NodeCoordinator, sink: Sink, link: MpiLink, record: dict[str, Any]
) -> tuple[Outcome, list[dict[str, Any]]]:
    """Rank 0: run its node, deliver rows and checkpoints to ``sink``; the outcome and every
    rank's timings. ``record["mpi_ranks"]``: every node's host, rank and pids (run.json)."""
    node.sink = sink
    node.on_idle = lambda: _relay_logs(link)
    _announce(link)
    nodes = _nodes(link, node)
    record["mpi_ranks"] = nodes  # in run.json from the start, and after a failure
    sink.started([facts["pid"] for facts in nodes])
    return _run_node(node, link)


_LINGER_S = 8.0  # a failed node waits this long for rank 0 to record its failure


def follow(node: NodeCoordinator, link: MpiLink) -> str:
    """Any other rank: run its node; rank 0 writes every result. Returns the run's status."""
    handler = _ToRankZero(link)
    parsgd_log = logging.getLogger("parsgd")
    parsgd_log.setLevel(logging.INFO)
    parsgd_log.addHandler(handler)
    parsgd_log.propagate = False
    try:
        _announce(link)
        _nodes(link, node)
        outcome, _ = _run_node(node, link)
    except Exception as exc:
        node.stop()
        link.report_failure(str(exc))
        link.linger(_LINGER_S)  # rank 0 records the failure, then the job ends
        raise
    finally:
        parsgd_log.removeHandler(handler)
    return outcome.status


class _MpiBackend:
    """``backend: mpi`` behind the registry's protocol: one rank per node.

    A run across nodes needs two steps the other backends do not: its set-up is checked
    before anything starts, and the ranks fork their workers and join before the run
    directory is claimed (rank 0 alone writes results; every other rank only runs its node).
    """

    def __init__(self) -> None:
        self.link: MpiLink | None = None
        self.node: NodeCoordinator | None = None
        self.record: dict[str, Any] = {}

    def check_setup(self, nodes: int) -> None:
        from parsgd.engine.backends.mpi_setup import check_mpi_setup

        check_mpi_setup(nodes)

    def join(self, team: Team, start: Position) -> bool:
        """Fork this node's workers, then join the other nodes (MPI_Init); True on the rank
        that writes the results."""
        from parsgd.engine.backends.mpi_setup import launched

        launch = launched()
        assert launch is not None  # check_setup has refused a run outside a launcher
        self.node = NodeCoordinator(team, start, Sink(), launch.rank)
        try:
            self.node.start_workers()
            self.link = join_nodes()
            self.node.attach(self.link)
        except BaseException:
            self.node.stop()
            raise
        return self.link.rank == 0

    def follow(self, team: Team, start: Position) -> str:
        assert self.link is not None and self.node is not None
        try:
            return follow(self.node, self.link)
        finally:
            self.node.stop()

    def run(self, team: Team, start: Position, sink: Any) -> tuple[Outcome, list[dict[str, Any]]]:
        assert self.link is not None and self.node is not None
        self.record = {}
        try:
            return lead(self.node, sink, self.link, self.record)
        finally:
            self.node.stop()


BACKEND = _MpiBackend()
