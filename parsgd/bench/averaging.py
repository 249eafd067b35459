"""One averaging round for M = 2: the engine's meeting against memcpy, a semaphore barrier and MPI.

A round is what every meeting costs on top of the local steps: barrier, average the rows,
adopt. "ours" is the engine's compiled meeting (``meetings.run_block`` with no local steps,
what every averaging meeting runs) in two forked processes, many meetings per call;
"per call" is the same meeting entered from Python once per meeting, as recording meetings
are. The baselines: a ``memcpy`` of the M models (the memory traffic floor, one process), a
numpy round behind ``multiprocessing.Barrier``, and ``MPI_Allreduce`` of the vector with
mpi4py under ``mpiexec -n 2`` (then a divide, as an average needs).
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.config.load import usable_cpus
from parsgd.data.shared import SharedArena
from parsgd.engine import meetings
from parsgd.engine.barrier import spin_budget, wait
from parsgd.engine.control import GLOBAL, OK, SPIN_NS
from parsgd.engine.team import TeamState
from parsgd.problems.steps import DenseLinear

M = 2
_JOIN_S = 120.0


def rounds_for(d: int, quick: bool) -> int:
    """Enough rounds that one repetition takes ~0.1 s at d = 1e6 and at d = 10."""
    rounds = int(min(5000, max(20, 2e7 / d)))
    return max(10, rounds // 4) if quick else rounds


class _Rank:
    """One rank's arguments to the compiled meetings, with no local steps."""

    def __init__(self, state: TeamState, rank: int) -> None:
        self.state, self.rank = state, rank
        d = state.W.shape[2]
        self.data = DenseLinear(np.zeros((1, 1)), np.zeros(1), 0.0, 0)  # no local steps
        self.scratch, self.tmp = np.zeros((1, d)), np.zeros(min(d, 512))
        self.carry = np.zeros(2, dtype=np.int64)
        self.pending = np.zeros(1, dtype=np.int64)
        self.index = 0

    def meetings(self, rounds: int) -> None:
        """``rounds`` global averaging meetings in one compiled call."""
        st = self.state
        status, _, _ = meetings.run_block(
            self.data, st.table, self.scratch, self.tmp, st.arrive, st.control,
            np.array([self.rank], dtype=np.int64),
            np.arange(M, dtype=np.int64), M, M, np.zeros((1, 0, 1)), np.zeros(0), 0,
            np.zeros(rounds, dtype=np.int64), np.full(rounds, GLOBAL, dtype=np.int64),
            np.ones(rounds, dtype=bool), self.index, True, os.getppid(), self.carry,
            self.pending, np.zeros(2),
        )  # fmt: skip
        self.index += rounds
        if status != OK:
            raise RuntimeError(f"compiled meetings ended with status {status}")

    def line_up(self) -> None:
        self.carry[0] += 1
        st = self.state
        wait(st.arrive, st.control, self.rank, int(self.carry[0]), 0, M, os.getppid())


def _numpy_rounds(state: TeamState, rank: int, barrier: Any, rounds: int) -> None:
    """The same round in numpy behind ``multiprocessing.Barrier`` (one buffer, two waits)."""
    W = state.W[0]
    for _ in range(rounds):
        barrier.wait()
        avg = W.sum(axis=0) / M
        barrier.wait()
        W[rank] = avg


def _rank_main(
    state: TeamState, rank: int, kind: str, rounds: int, reps: int, out: np.ndarray, mp: Any
) -> None:
    me = _Rank(state, rank)
    me.meetings(1)  # load the compiled code before timing
    for rep in range(reps):
        me.line_up()  # line up before the clock starts
        tic = time.perf_counter()
        if kind == "compiled":
            me.meetings(rounds)
        elif kind == "per_call":
            for _ in range(rounds):
                me.meetings(1)
        else:
            _numpy_rounds(state, rank, mp, rounds)
        out[rank, rep] = (time.perf_counter() - tic) / rounds
    os._exit(0)


def round_latency(d: int, kind: str, rounds: int, reps: int) -> float:
    """Median seconds per round over ``reps`` repetitions (rank 0's clock), 2 processes."""
    context = multiprocessing.get_context("fork")
    arena = SharedArena()
    try:
        state = TeamState(arena, M, d)
        state.control[SPIN_NS] = spin_budget(M, usable_cpus())  # as the engine sets it
        state.W[:] = np.arange(M, dtype=np.float64)[None, :, None]
        out = arena.zeros((M, reps))
        mp_barrier = context.Barrier(M) if kind == "mp_barrier" else None
        procs = [
            context.Process(target=_rank_main, args=(state, r, kind, rounds, reps, out, mp_barrier))
            for r in range(M)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(_JOIN_S)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        if any(proc.exitcode != 0 for proc in procs):
            raise RuntimeError(f"{kind} round workers failed: {[p.exitcode for p in procs]}")
        return float(np.median(out[0]))
    finally:
        arena.close()


def memcpy_latency(d: int, rounds: int, reps: int) -> float:
    """Median seconds to copy the M models once (``np.copyto`` is a memcpy for these)."""
    src, dst = np.ones((M, d)), np.zeros((M, d))
    times = []
    for _ in range(reps):
        tic = time.perf_counter()
        for _ in range(rounds):
            np.copyto(dst, src)
        times.append((time.perf_counter() - tic) / rounds)
    return float(np.median(times))


def mpi_latency(sizes: dict[int, int], reps: int) -> dict[int, float] | str:
    """Median Allreduce+divide seconds per size, from ``mpiexec -n 2``; or why it was skipped."""
    if importlib.util.find_spec("mpi4py") is None:
        return "skipped: mpi4py is not installed (pip install 'parsgd[bench]')"
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
        "mpiexec"
    )
    if mpiexec is None:
        return "skipped: no mpiexec (pip install mpich)"
    spec = json.dumps({str(d): r for d, r in sizes.items()})
    command = [mpiexec, "-n", str(M), sys.executable, "-m", "parsgd.bench.mpi_allreduce"]
    try:
        done = subprocess.run(
            [*command, spec, str(reps)], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return "skipped: mpiexec timed out"
    if done.returncode != 0:
        return f"skipped: mpiexec failed: {done.stderr.strip()[-300:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {int(d): float(t) for d, t in result.items()}


def measure(quick: bool) -> dict[str, Any]:
    """Round latency rows for d = 10, 1e3, 1e5, 1e6 (seconds per round, medians).

    The repetitions of the in-tree kinds are interleaved (one of each, then again) so that a
    noisy neighbour slows them alike; MPI runs in its own ``mpiexec`` between them.
    """
    reps = 3 if quick else 7
    sizes = {d: rounds_for(d, quick) for d in (10, 1_000, 100_000, 1_000_000)}
    kinds = ("engine_compiled", "engine_per_call", "memcpy", "mp_barrier")
    samples: dict[int, dict[str, list[float]]] = {d: {k: [] for k in kinds} for d in sizes}
    mpi: dict[int, float] | str = "skipped: not run"
    for rep in range(reps):
        if rep == reps // 2:
            mpi = mpi_latency(sizes, reps)
        for d, rounds in sizes.items():
            got = samples[d]
            got["engine_compiled"].append(round_latency(d, "compiled", rounds, 1))
            got["engine_per_call"].append(round_latency(d, "per_call", rounds, 1))
            got["memcpy"].append(memcpy_latency(d, rounds, 1))
            got["mp_barrier"].append(round_latency(d, "mp_barrier", max(10, rounds // 10), 1))
    out: dict[str, Any] = {"workers": M}
    for d, rounds in sizes.items():
        row: dict[str, Any] = {"rounds": rounds}
        row.update({k: float(np.median(v)) for k, v in samples[d].items()})
        row["mpi_allreduce"] = mpi[d] if isinstance(mpi, dict) else None
        out[f"d{d}"] = row
    if isinstance(mpi, str):
        out["mpi_note"] = mpi
    return out
