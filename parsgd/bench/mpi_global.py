"""The global averaging round across MPI ranks against a raw mpi4py Allreduce, same run.

``measure`` starts ``mpiexec -n 2 python -m parsgd.bench.mpi_global SPEC REPS``; each rank
(a node with one worker) times, interleaved repetition by repetition so that a noisy
neighbour slows both alike:

    global      what a global meeting across nodes does, with the engine's own code: the
                node's row of the model table, its flags in the row's spare column, to
                every node (``mpi_node.exchange_meeting``: one persistent in-place
                Allgather, polled with heartbeats), then the average of every row in the
                meetings' fixed order (``meetings.average_rows``, as the workers compute it)
    allreduce   comm.Allreduce(IN_PLACE, SUM) of the same row, then the divide

Rank 0 prints one JSON line ``{"d": {"global": s, "allreduce": s}}`` (median s per round).

``backend_rates`` times whole runs through the command line: ``backend: mpi`` on one node
(``mpiexec -n 1``) against ``backend: processes``, same config, interleaved run by run.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.bench.report import Row

RANKS = 2
SIZES = (1_000, 100_000, 1_000_000)
TARGET = 1.5  # the global round may take at most this many times the Allreduce


def _rounds(d: int, quick: bool) -> int:
    budget = 1e6 if quick else 5e6  # doubles moved per repetition
    return max(5, min(2000, int(budget / d)))


def main() -> None:
    from parsgd.data.shared import LocalArena
    from parsgd.engine.backends.mpi_link import MpiLink
    from parsgd.engine.backends.mpi_node import exchange_meeting
    from parsgd.engine.backends.mpi_setup import init_mpi
    from parsgd.engine.barrier import PAD
    from parsgd.engine.control import N_CONTROL
    from parsgd.engine.meetings import average_rows
    from parsgd.engine.team import TeamState

    sizes = {int(d): int(r) for d, r in json.loads(sys.argv[1]).items()}
    reps = int(sys.argv[2])
    MPI = init_mpi()
    link = MpiLink(MPI, timeout_s=600.0)  # the blocking Allreduce baseline sends no heartbeats
    comm = MPI.COMM_WORLD
    result: dict[str, dict[str, float]] = {}
    R, rank = link.size, link.rank
    arrive, control = np.zeros(R * PAD, dtype=np.int64), np.zeros(N_CONTROL, dtype=np.int64)
    for d, rounds in sizes.items():
        # The model table's two buffers as a run across nodes has them: a row a node, padded
        # to whole cache lines past a spare column for the row's flags.
        state = TeamState(LocalArena(), R, d, flag_column=True)
        table, column = state.table, state.flag_column
        assert column is not None
        gathers = [link.in_place_gather(buffer) for buffer in table]
        table[:, rank, :d] = float(rank) + 0.5
        w = np.full(d, float(rank) + 0.5)
        out, tmp = np.empty(d), np.empty(min(d, 512))
        times: dict[str, list[float]] = {"global": [], "allreduce": []}
        for _ in range(reps):
            comm.Barrier()
            tic = time.perf_counter()
            for i in range(rounds):
                side = i % 2
                exchange_meeting(
                    gathers[side], table[side], column, arrive, control, side, rank, rank + 1
                )
                average_rows(table[i % 2], 0, R, 1, out, tmp)
            times["global"].append((time.perf_counter() - tic) / rounds)
            comm.Barrier()
            tic = time.perf_counter()
            for _ in range(rounds):
                comm.Allreduce(MPI.IN_PLACE, w, op=MPI.SUM)
                w /= link.size
            times["allreduce"].append((time.perf_counter() - tic) / rounds)
        result[str(d)] = {k: float(np.median(v)) for k, v in times.items()}
    link.close()
    if link.rank == 0:
        print(json.dumps(result), flush=True)


def measure(quick: bool) -> dict[str, Any]:
    """Seconds per round of both kinds per size, or ``{"skipped": why}``."""
    if importlib.util.find_spec("mpi4py") is None:
        return {"skipped": "mpi4py is not installed (pip install 'parsgd[mpi]')"}
    here = str(Path(sys.executable).parent)
    mpiexec = shutil.which("mpiexec", path=here) or shutil.which("mpiexec")
    if mpiexec is None:
        return {"skipped": "no mpiexec (pip install 'parsgd[mpi]')"}
    spec = json.dumps({str(d): _rounds(d, quick) for d in SIZES})
    command = [mpiexec, "-n", str(RANKS), sys.executable, "-m", "parsgd.bench.mpi_global"]
    try:
        done = subprocess.run(
            [*command, spec, str(3 if quick else 7)], capture_output=True, text=True, timeout=600
        )
    except subprocess.TimeoutExpired:
        return {"skipped": "mpiexec timed out"}
    if done.returncode != 0:
        return {"skipped": f"mpiexec failed: {done.stderr.strip()[-300:]}"}
    return {
        "sizes": json.loads(done.stdout.strip().splitlines()[-1]),
        "backend": backend_rates(mpiexec, quick),
    }


BACKEND_TARGET = 0.95  # backend: mpi on one node: at most 5% slower than processes


def backend_rates(mpiexec: str, quick: bool) -> dict[str, Any]:
    """Median samples/s (the trial's clock, as the throughput rows) of ``backend: mpi`` under
    ``mpiexec -n 1`` and of ``backend: processes`` on the same 2-worker config, interleaved.
    A whole run's time would be half start-up here (~1 s runs), which both backends share."""
    import tempfile

    import yaml

    from parsgd.bench.throughput import trial_rate  # not at the top: ranks run main() only

    steps = 300_000 if quick else 2_000_000
    config = {
        "name": "b", "seed": 3, "trials": 1, "workers": 2,
        "data": {"kind": "gaussian_linear", "n": 20_000, "d": 100, "noise": 0.3},
        "sgd": {"steps": steps, "step_size": 0.01},
        "averaging": {"every": 10}, "eval": {"every": 1_000_000},
    }  # fmt: skip
    rates: dict[str, list[float]] = {"mpi": [], "processes": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.yaml"
        path.write_text(yaml.safe_dump(config))
        for rep in range(1 if quick else 3):
            for backend in ("mpi", "processes") if rep % 2 == 0 else ("processes", "mpi"):
                out = Path(tmp) / f"{backend}{rep}"
                launcher = [mpiexec, "-n", "1"] if backend == "mpi" else []
                command = [*launcher, sys.executable, "-m", "parsgd", "run", str(path),
                           "--set", f"backend={backend}", "--out", str(out)]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    return {"skipped": f"{backend} run failed: {done.stderr.strip()[-300:]}"}
                rates[backend].append(trial_rate(out / "b", steps))
    return {k: float(np.median(v)) for k, v in rates.items()}


def rows(raw: dict[str, Any], averaging: dict[str, Any]) -> list[Row]:
    """Per size: global round vs Allreduce (target), and vs the in-node round (info)."""
    if "skipped" in raw:
        label = "global round (MPI, 2 ranks)"
        return [Row(label, None, "us", "mpi4py Allreduce", None, None, 1 / TARGET, raw["skipped"])]
    out = [_backend_row(raw.get("backend", {"skipped": "not measured"}))]
    for d, times in raw["sizes"].items():
        label = f"global round 2 ranks d={int(d):.0e}"
        mine, theirs = times["global"], times["allreduce"]
        out.append(
            Row(label, mine * 1e6, "us", "mpi4py Allreduce", theirs * 1e6, theirs / mine,
                1 / TARGET, "fixed rank order; ratio >= 0.67 means at most 1.5x the Allreduce")
        )  # fmt: skip
        node = averaging.get(f"d{d}", {}).get("engine_compiled")
        if node:
            out.append(
                Row(label, mine * 1e6, "us", "in-node round M=2", node * 1e6, node / mine, None,
                    "what crossing nodes costs over averaging in shared memory")
            )  # fmt: skip
    return out


def _backend_row(rates: dict[str, Any]) -> Row:
    label = "backend mpi, 1 node (mpiexec -n 1)"
    if "skipped" in rates:
        return Row(label, None, "samples/s", "backend processes", None, None, BACKEND_TARGET,
                   rates["skipped"])  # fmt: skip
    mine, theirs = rates["mpi"], rates["processes"]
    note = "same config, the trial's clock; ratio >= 0.95: at most 5% slower"
    return Row(label, mine, "samples/s", "backend processes", theirs, mine / theirs,
               BACKEND_TARGET, note)  # fmt: skip


if __name__ == "__main__":
    main()
