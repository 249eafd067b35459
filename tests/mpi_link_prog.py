"""Run under ``mpiexec -n R``: exercises the MPI transport (engine/backends/mpi_link.py).

    sums      fork a child before MPI_Init (as a rank forks its workers), then check that
              in_place_gather brings every rank's rows, bit for bit, into every rank's
              buffer, for small and large rows, twice into the same buffers (persistent
              requests reused) and into others; that the meetings' fixed-order average of
              the gathered rows is the serial sum's bits on every rank
    stopped   rank 1 SIGSTOPs itself during a meeting: rank 0 must raise PeerLost naming
              rank 1, then abort the job (which also ends the stopped rank)
    killed    rank 1 SIGKILLs itself; the launcher or rank 0 must end the job
Prints one ``OK ...`` or ``LOST ...`` line per rank; exits non-zero on a wrong sum.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

from parsgd.engine.backends.mpi_link import MpiLink, PeerLost
from parsgd.engine.backends.mpi_setup import init_mpi, launched
from parsgd.engine.meetings import average_rows

SIZES = (1, 7, 1000, 8191, 100_003)


def say(line: str) -> None:
    """One line in one write (under PIPE_BUF: atomic), so ranks' lines never interleave."""
    os.write(1, (line + "\n").encode())


def vectors(size: int, d: int, seed: int = 0) -> list[np.ndarray]:
    """Every rank's vector, reproducible on any rank (values of mixed magnitudes)."""
    rng = np.random.default_rng([d, seed])
    return [rng.standard_normal(d) * 10.0 ** rng.integers(-8, 8, d) for _ in range(size)]


def serial_sum(parts: list[np.ndarray]) -> np.ndarray:
    total = parts[0].copy()
    for part in parts[1:]:
        total += part
    return total


def check_sums() -> None:
    launch = launched()
    assert launch is not None, "not under an MPI launcher"
    child = os.fork()  # before MPI_Init, as a rank forks its node's workers
    if child == 0:
        os._exit(0 if float(np.ones(3).sum()) == 3.0 else 1)
    assert os.waitpid(child, 0)[1] == 0
    MPI = init_mpi()
    link = MpiLink(MPI)
    assert link.rank == launch.rank and link.size == launch.size
    buffers = {d: [np.zeros((link.size, d)) for _ in range(2)] for d in SIZES}
    gathers = {d: [link.in_place_gather(table) for table in buffers[d]] for d in SIZES}
    for again in range(5):  # each buffer's persistent request twice, then a new buffer
        for d in SIZES:
            parts = vectors(link.size, d, again)
            table = buffers[d][again % 2] if again < 4 else np.zeros((link.size, d))
            table[:] = np.nan  # every other rank's row must arrive
            table[link.rank] = parts[link.rank]
            gather = gathers[d][again % 2] if again < 4 else link.in_place_gather(table)
            gather()
            if table.tobytes() != np.stack(parts).tobytes():
                say(f"WRONG gather d={d} rank {link.rank} round {again}")
                sys.exit(1)
            out = np.empty(d)
            average_rows(table, 0, link.size, 1, out, np.empty(min(d, 512)))
            expected = serial_sum(parts) / link.size
            if link.size >= 3 and d == SIZES[-1]:  # power: another order gives other bits
                assert (serial_sum(parts[::-1]) / link.size).tobytes() != expected.tobytes()
            if out.tobytes() != expected.tobytes():
                say(f"WRONG average d={d} rank {link.rank} round {again}")
                sys.exit(1)
    infos = link.gather_json({"rank": link.rank, "pid": os.getpid(), "pad": "x" * link.rank})
    assert [info["rank"] for info in infos] == list(range(link.size))
    assert infos[link.rank]["pid"] == os.getpid()
    if link.rank != 0:
        for k in range(50):
            link.send_log(f"line {k} from {link.rank}: " + "y" * (k * 1000))
    link.close()
    if link.rank == 0:
        logs = link.received_logs()
        for r in range(1, link.size):
            mine = [line for rank, line in logs if rank == r]
            assert [line.split(":")[0] for line in mine] == [
                f"line {k} from {r}" for k in range(50)
            ]
            assert len(mine[-1]) == len("line 49 from 1: ") + 49_000
    node = os.environ.get("SLURMD_NODENAME", "-")  # which emulated node, under srun
    netmod = os.environ.get("MPIR_CVAR_CH4_NETMOD", "default")  # init_mpi's choice, if any
    say(f"OK rank {link.rank} of {link.size} on {link.hosts[link.rank]} node {node} {netmod}")


def check_lost(how: signal.Signals) -> None:
    MPI = init_mpi()
    link = MpiLink(MPI, timeout_s=2.0, heartbeat_s=0.2)
    rows = np.ones((link.size, 10))
    gather = link.in_place_gather(rows)
    gather()
    say(f"READY rank {link.rank} pid {os.getpid()}")
    if link.rank == 1:
        os.kill(os.getpid(), how)
    try:
        while True:  # the local phase: the coordinator idles, pumping heartbeats
            for _ in range(10):
                link.pump()
                time.sleep(0.01)
            gather()
    except PeerLost as exc:
        say(f"LOST rank {link.rank}: {exc}")
        link.abort(3)


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "sums":
        check_sums()
    else:
        check_lost(signal.SIGSTOP if mode == "stopped" else signal.SIGKILL)
