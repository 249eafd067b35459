"""One averaging round for M = 2: the engine's round against memcpy, a semaphore barrier and MPI.

A round is what every meeting costs on top of the local steps: barrier, average this rank's
column chunk into ``avg``, barrier, adopt ``avg``. "ours" is the engine's compiled round
(``fastpath.rounds`` with no local steps, what plain averaging meetings run), in two forked
processes; "python" is the engine's Python phases (``Team.phase_average`` / ``decision`` /
``phase_settle``) behind its ``SpinBarrier``, what recording meetings run. The baselines: a
``memcpy`` of the M models (the memory traffic floor, one process), the same Python round
behind ``multiprocessing.Barrier``, and ``MPI_Allreduce`` of the vector with mpi4py under
``mpiexec -n 2`` (then a divide, as an average needs).
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
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from parsgd.data.shared import SharedArena
from parsgd.engine import fastpath
from parsgd.engine.plan import Meeting, Plan
from parsgd.engine.team import Settings, Team, TeamState
from parsgd.engine.worker import SpinBarrier
from parsgd.problems.kernels.linear import LEAST_SQUARES
from parsgd.schedules import StepSize

M = 2
_JOIN_S = 120.0


def rounds_for(d: int, quick: bool) -> int:
    """Enough rounds that one repetition takes ~0.1 s at d = 1e6 and at d = 10."""
    rounds = int(min(5000, max(20, 2e7 / d)))
    return max(10, rounds // 4) if quick else rounds


def _team(arena: SharedArena, d: int) -> Team:
    problem: Any = SimpleNamespace(d=d)
    settings = Settings(M, 1, 0, 1, "zeros", 0.0, StepSize(0.1))
    nothing = np.zeros(1, dtype=bool)  # a one-meeting plan: the rounds here drive themselves
    plan = Plan(1, np.ones(1, dtype=np.int64), nothing, nothing, nothing, np.ones(1, np.int64))
    return Team(problem, plan, TeamState(arena, M, d), settings)


def _engine_rounds(team: Team, rank: int, wait: Callable[[], None], rounds: int) -> None:
    meeting = Meeting(step=1, average=True, record=False, checkpoint=False, syncs=1)
    for _ in range(rounds):
        wait()
        team.phase_average(rank)
        wait()
        team.decision()
        team.phase_settle(rank, meeting)


def _compiled_rounds(team: Team, rank: int, spin: SpinBarrier, rounds: int) -> None:
    """``rounds`` meetings with no local steps in one call of the engine's compiled path."""
    st = team.state
    chunks = np.array(team.chunks, dtype=np.int64)
    dummy = np.zeros((1, 1))
    status, _, _, spin.generation = fastpath.rounds(
        dummy, dummy[0], 0.0, LEAST_SQUARES, st.W, st.avg, st.flags, st.arrive, st.control,
        st.position, np.array([rank], dtype=np.int64), chunks, np.zeros((1, 0, 1)), np.zeros(0), 0,
        np.zeros(rounds, dtype=np.int64), True, spin.generation, os.getppid(), np.zeros(2),
    )  # fmt: skip
    if status != fastpath.OK:
        raise RuntimeError(f"compiled rounds ended with status {status}")


def _rank_main(
    team: Team, rank: int, kind: str, rounds: int, reps: int, out: np.ndarray, mp_barrier: Any
) -> None:
    st = team.state
    spin = SpinBarrier(st.arrive, st.control, rank, os.getppid())
    wait = mp_barrier.wait if kind == "mp_barrier" else spin
    if kind == "compiled":
        _compiled_rounds(team, rank, spin, 1)  # load the compiled code before timing
    for rep in range(reps):
        spin()  # line up before the clock starts
        tic = time.perf_counter()
        if kind == "compiled":
            _compiled_rounds(team, rank, spin, rounds)
        else:
            _engine_rounds(team, rank, wait, rounds)
        out[rank, rep] = (time.perf_counter() - tic) / rounds
    os._exit(0)


def round_latency(d: int, kind: str, rounds: int, reps: int) -> float:
    """Median seconds per round over ``reps`` repetitions (rank 0's clock), 2 processes."""
    context = multiprocessing.get_context("fork")
    arena = SharedArena()
    try:
        team = _team(arena, d)
        team.state.W[:] = np.arange(M, dtype=np.float64)[:, None]
        out = arena.zeros((M, reps))
        mp_barrier = context.Barrier(M) if kind == "mp_barrier" else None
        procs = [
            context.Process(target=_rank_main, args=(team, r, kind, rounds, reps, out, mp_barrier))
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
    kinds = ("engine_compiled", "engine_spin", "memcpy", "mp_barrier")
    samples: dict[int, dict[str, list[float]]] = {d: {k: [] for k in kinds} for d in sizes}
    mpi: dict[int, float] | str = "skipped: not run"
    for rep in range(reps):
        if rep == reps // 2:
            mpi = mpi_latency(sizes, reps)
        for d, rounds in sizes.items():
            got = samples[d]
            got["engine_compiled"].append(round_latency(d, "compiled", rounds, 1))
            got["engine_spin"].append(round_latency(d, "spin", rounds, 1))
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
