"""The global level across nodes over MPI: every node's rows in place, and no endless wait.

One rank per node (its coordinator) holds an ``MpiLink``; its workers never touch MPI.

Determinism: MPI_Allreduce does not fix the order in which it adds the ranks' values, so
nothing here adds. At a global meeting each node's rank gathers every node's rows of the
model table (and their flags) into its own node's copy, in place (``in_place_gather``: one
persistent Allgather per buffer, started each meeting, no rows copied), and the node's
workers then average all the rows themselves, in the fixed order of the shared-memory
meeting with ``nodes: R`` groups (engine/meetings.py): the same bits on every node.

No collective waits forever: every operation is non-blocking and is polled; while polling,
and whenever the coordinator is idle (``pump``), the ranks exchange heartbeats on their own
communicator. A peer silent for ``timeout_s`` (dead, SIGSTOPped, hung, cut off) raises
``PeerLost`` naming its rank and host; the caller records the failure and then calls
``abort``, since MPI offers no portable way to leave a collective a lost peer will never
join. Heartbeats rather than a timeout per collective: global meetings may be minutes
apart (``global_every: end``), and only heartbeats tell a slow peer from a lost one. They
start with the link, after MPI_Init: a rank's slow start-up (kernels compiled into a cold
numba cache, data loaded) comes before it, and MPI_Init's own start-up barrier waits for the
slowest rank. ``longest_silence_s`` says how close a run came to the timeout.

Records: ``gather_json`` gives every rank each rank's facts (host, pids) for run.json;
``send_log`` queues a log line for rank 0, which takes lines in whenever it polls
(``received_logs``), so that log.txt gets every node's lines, tagged by the caller.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.errors import ParsgdError

HEARTBEAT_S = 0.5
TIMEOUT_S = 5.0
_HOST_BYTES = 256
_MPI_SHM = "/dev/shm/mpich_shm_"
HYDRA_TOPOLOGY = "hydra_hwloc_xmlfile_"  # MPICH's hydra: a host's topology, for MPI_Init
_HYDRA_PROXY = "hydra_pmi_proxy"
_ANCESTORS = 4  # the proxy is the rank's parent, or a few levels up (a wrapper script)
_BEAT_TAG = 7
_LOG_TAG = 8
_FAIL_TAG = 9
_REPORT_S = 2.0  # longest wait for a failure report to leave
_SPINS = 2000  # polls before yielding the core between polls
_PUMP_EVERY = 64  # polls between heartbeat checks (a Test costs about a microsecond)


class PeerLost(ParsgdError):
    """A rank stopped answering (or MPI reported it failed)."""

    def __init__(self, rank: int | None, host: str, cause: str) -> None:
        where = f"node {rank} (host {host}, rank {rank})" if rank is not None else "a node"
        super().__init__(f"{where} lost: {cause}")
        self.rank, self.host, self.cause = rank, host, cause


def where(rank: int, host: str) -> str:
    """How a failure names a node."""
    return f"node {rank} (host {host}, rank {rank})"


class NodeFailed(ParsgdError):
    """Another node failed (a worker died, a peer was lost) and said why."""

    def __init__(self, rank: int, host: str, cause: str) -> None:
        super().__init__(f"{where(rank, host)}: {cause}")
        self.rank, self.host, self.cause = rank, host, cause


class MpiLink:
    """This node's rank in the global level; ``MPI`` is ``init_mpi()``'s module."""

    def __init__(self, MPI: Any, timeout_s: float = TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S):
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD.Dup()  # meetings
        self._beat = MPI.COMM_WORLD.Dup()  # heartbeats, so they never match a meeting message
        self._logs = MPI.COMM_WORLD.Dup()  # log lines to rank 0
        for comm in (self.comm, self._beat, self._logs):
            comm.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout_s, self.heartbeat_s = timeout_s, heartbeat_s
        self.peers = [r for r in range(self.size) if r != self.rank]
        self.hosts = [f"rank{r}" for r in range(self.size)]
        now = time.monotonic()
        self._heard = dict.fromkeys(self.peers, now)
        self.longest_silence_s = 0.0  # of any peer, between heartbeats (log.txt reports it)
        self._sent_at = 0.0
        self._token = np.zeros(1, dtype=np.int64)
        self._inbox = {p: np.zeros(1, dtype=np.int64) for p in self.peers}
        self._listening = {p: self._listen(p) for p in self.peers}
        self._outbox: list[Any] = []
        self._sending_logs: list[tuple[np.ndarray, Any]] = []
        self._log_inbox: list[tuple[int, str]] = []
        self._closed = False
        self._persistent: list[Any] = []  # in_place_gather's requests, freed by close
        self.hosts = self._exchange_hosts()
        # Every rank has passed MPI_Init (it took part above), so every rank of this host has
        # mapped MPICH's shared-memory segment and read its launcher's topology file: unlink
        # both now, so that a killed or aborted job leaves nothing in /dev/shm or the temp
        # directory (the mappings stay valid; the topology is loaded).
        _unlink_mapped_segments()
        _unlink_launcher_topology()

    # -- liveness ----------------------------------------------------------------------
    def _listen(self, peer: int) -> Any:
        return self._beat.Irecv(self._inbox[peer], source=peer, tag=_BEAT_TAG)

    def pump(self) -> None:
        """Send a heartbeat when one is due, take the peers'; PeerLost on a silent peer.

        The coordinator calls this while idle (at least every ``heartbeat_s``); every
        operation here calls it while it waits.
        """
        now = time.monotonic()
        if self.rank == 0:  # so that no rank's log line waits on rank 0 for long
            self._take_logs()
            self._take_failure()
        if now - self._sent_at >= self.heartbeat_s:
            self._outbox = [req for req in self._outbox if not req.Test()]
            self._outbox += [
                self._beat.Isend(self._token, dest=p, tag=_BEAT_TAG) for p in self.peers
            ]
            self._sent_at = now
        for peer in self.peers:
            while self._listening[peer].Test():
                self._heard[peer] = now
                self._listening[peer] = self._listen(peer)
            silence = now - self._heard[peer]
            self.longest_silence_s = max(self.longest_silence_s, silence)
            if silence > self.timeout_s:
                raise PeerLost(peer, self.hosts[peer], f"no heartbeat for {self.timeout_s:g} s")

    def _wait(self, request: Any) -> None:
        """Poll ``request`` to completion: spin, then yield the core; heartbeats meanwhile."""
        polls = 0
        try:
            while not request.Test():
                polls += 1
                if polls % _PUMP_EVERY == 0:
                    self.pump()
                if polls > _SPINS:
                    os.sched_yield()
        except self.MPI.Exception as exc:
            raise self._lost_by_error(f"MPI error: {exc.Get_error_string()}") from None

    def _lost_by_error(self, cause: str) -> PeerLost:
        """Name the node an MPI error is about (a transport that sees a broken connection,
        such as OFI's tcp, reports a killed peer as an error before its heartbeat is late):
        the only peer, or the one peer whose heartbeat receive fails as well."""
        failing = []
        for peer in self.peers:
            try:
                self._listening[peer].Test()
            except self.MPI.Exception:
                failing.append(peer)
        named = self.peers if len(self.peers) == 1 else failing
        if len(named) == 1:
            return PeerLost(named[0], self.hosts[named[0]], cause)
        return PeerLost(None, "?", cause)

    # -- the group interface's global level ----------------------------------------------
    def _exchange_hosts(self) -> list[str]:
        mine = np.zeros(_HOST_BYTES, dtype=np.uint8)
        name = socket.gethostname().encode()[:_HOST_BYTES]
        mine[: len(name)] = np.frombuffer(name, dtype=np.uint8)
        every = np.zeros((self.size, _HOST_BYTES), dtype=np.uint8)
        self._wait(self.comm.Iallgather(mine, every))
        return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in every]

    def barrier(self) -> None:
        """Every rank has arrived (a non-blocking barrier, polled)."""
        self._wait(self.comm.Ibarrier())

    def in_place_gather(self, array: np.ndarray) -> Callable[[], None]:
        """A gather of ``array`` in place, to call at every meeting: every rank's block of
        its rows (rank r owns the r-th of R equal blocks) from its owner. Collective: every
        rank makes its gathers in the same order.

        The global meetings exchange the model table (flags included) and the statistics
        this way, every meeting into the same few buffers, so each buffer gets one
        persistent Allgather (MPI-4 ``Allgather_init``), started anew at each call and
        polled by ``_wait``: a request built afresh every meeting cost more than an Allreduce
        of the same bytes at d = 1e3. An MPI without persistent collectives gets an
        ``Iallgather`` at each call.
        """
        if array.shape[0] % self.size or not array.flags.c_contiguous:
            raise ValueError(f"cannot gather {array.shape} in place over {self.size} ranks")
        try:
            request = self.comm.Allgather_init(self.MPI.IN_PLACE, array)
        except NotImplementedError:  # mpi4py's word for a function the MPI lacks
            return lambda: self._wait(self.comm.Iallgather(self.MPI.IN_PLACE, array))
        self._persistent.append(request)

        def gather() -> None:
            request.Start()
            self._wait(request)

        return gather

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-able ``value`` (its host, pids, ...), in rank order, on every rank."""
        mine = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        sizes = np.zeros(self.size, dtype=np.int64)
        self._wait(self.comm.Iallgather(np.array([mine.size], dtype=np.int64), sizes))
        every = np.zeros(int(sizes.sum()), dtype=np.uint8)
        self._wait(self.comm.Iallgatherv(mine, (every, sizes)))
        edges = np.concatenate([[0], np.cumsum(sizes)])
        return [json.loads(bytes(every[a:b])) for a, b in itertools.pairwise(edges)]

    # -- log lines to rank 0 ---------------------------------------------------------------
    def send_log(self, line: str) -> None:
        """Queue one log line for rank 0 (which writes log.txt); rank 0 keeps its own."""
        data = np.frombuffer(line.encode(errors="replace"), dtype=np.uint8).copy()
        self._sending_logs = [(b, r) for b, r in self._sending_logs if not r.Test()]
        self._sending_logs.append((data, self._logs.Isend(data, dest=0, tag=_LOG_TAG)))

    def received_logs(self) -> list[tuple[int, str]]:
        """On rank 0: the (rank, line) pairs arrived so far, each rank's in the order sent."""
        if not self._closed:
            self._take_logs()
        lines, self._log_inbox = self._log_inbox, []
        return lines

    def _take_logs(self) -> None:
        status = self.MPI.Status()
        while self._logs.Iprobe(source=self.MPI.ANY_SOURCE, tag=_LOG_TAG, status=status):
            data = np.empty(status.Get_count(self.MPI.BYTE), dtype=np.uint8)
            self._logs.Recv(data, source=status.Get_source(), tag=_LOG_TAG)
            self._log_inbox.append((status.Get_source(), bytes(data).decode(errors="replace")))

    # -- failures to rank 0 -------------------------------------------------------------
    def report_failure(self, cause: str) -> None:
        """Tell rank 0 why this node failed (it raises ``NodeFailed``); waits at most
        ``_REPORT_S`` for the message to leave (rank 0 may be gone too)."""
        if self.rank == 0 or self._closed:
            return
        data = np.frombuffer(cause.encode(errors="replace"), dtype=np.uint8).copy()
        request = self._logs.Isend(data, dest=0, tag=_FAIL_TAG)
        deadline = time.monotonic() + _REPORT_S
        with contextlib.suppress(self.MPI.Exception):
            while not request.Test() and time.monotonic() < deadline:
                time.sleep(0.01)

    def linger(self, seconds: float) -> None:
        """Keep heartbeats going for up to ``seconds``, or until a peer is lost (rank 0 has
        recorded a failure and ended)."""
        deadline = time.monotonic() + seconds
        with contextlib.suppress(PeerLost, self.MPI.Exception):
            while time.monotonic() < deadline:
                self.pump()
                time.sleep(0.05)

    def _take_failure(self) -> None:
        status = self.MPI.Status()
        if self._logs.Iprobe(source=self.MPI.ANY_SOURCE, tag=_FAIL_TAG, status=status):
            data = np.empty(status.Get_count(self.MPI.BYTE), dtype=np.uint8)
            source = status.Get_source()
            self._logs.Recv(data, source=source, tag=_FAIL_TAG)
            cause = bytes(data).decode(errors="replace")
            raise NodeFailed(source, self.hosts[source], cause)

    def flush_logs(self) -> None:
        """Wait (polled) until every queued log line has left this rank."""
        for _, request in self._sending_logs:
            self._wait(request)
        self._sending_logs = []

    # -- the end ---------------------------------------------------------------------------
    def abort(self, code: int) -> None:
        """End every rank of the job now (after a lost peer: nothing else can)."""
        self.MPI.COMM_WORLD.Abort(code)

    def close(self) -> None:
        """A clean end: logs sent, every rank arrives, heartbeats withdrawn, MPI finalised.

        Every rank's log lines have reached rank 0 when this returns there (each rank flushed
        them before the barrier; rank 0 takes them in while it waits): ``received_logs``.
        """
        self.flush_logs()
        self.barrier()
        if self.rank == 0:
            self._take_logs()
        self._closed = True
        for request in self._persistent:  # inactive between meetings
            request.Free()
        self._persistent.clear()
        for request in self._listening.values():
            request.Cancel()
            request.Wait()
        for request in self._outbox:
            request.Wait()
        self._beat.Free()
        self._logs.Free()
        self.comm.Free()
        # MPI_Finalize on the clean path only (it may wait on a lost peer): without it MPICH
        # leaves its shared-memory segment in /dev/shm.
        self.MPI.Finalize()


def _unlink_mapped_segments() -> None:
    """Unlink the /dev/shm files of MPI's own that this process has mapped (MPICH's)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    for name in sorted({line.split()[-1] for line in maps.splitlines() if _MPI_SHM in line}):
        with contextlib.suppress(OSError):
            os.unlink(name)


def _unlink_launcher_topology() -> None:
    """Unlink the hwloc topology file MPICH's hydra launcher wrote for this host's ranks.

    Under ``mpiexec`` each host's ``hydra_pmi_proxy`` (this rank's parent, or an ancestor)
    writes the host's topology to ``hydra_hwloc_xmlfile_*`` in the temp directory at its
    ranks' first MPI_Init, keeps it open and removes it only when it exits normally. After
    an ``MPI_Abort``, or when ``mpiexec`` is killed, ``mpiexec`` SIGKILLs its proxies and the
    file stays behind. Once every rank of the host has passed MPI_Init it is not read again:
    found through the proxy's open files, so only that job's own file is touched.
    """
    pid = os.getppid()
    for _ in range(_ANCESTORS):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name == _HYDRA_PROXY:
                break
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return
    else:
        return
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if Path(target).name.startswith(HYDRA_TOPOLOGY):
                    os.unlink(target)
