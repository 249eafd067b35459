"""Run under ``mpiexec -n 2``: time an in-place Allreduce (then divide) per vector size.

Usage: ``python -m parsgd.bench.mpi_allreduce '{"d": rounds, ...}' REPS``; rank 0 prints one
JSON line ``{"d": median seconds per round}``.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from mpi4py import MPI


def main() -> None:
    sizes = {int(d): int(r) for d, r in json.loads(sys.argv[1]).items()}
    reps = int(sys.argv[2])
    comm = MPI.COMM_WORLD
    size = comm.Get_size()
    result = {}
    for d, rounds in sizes.items():
        w = np.full(d, float(comm.Get_rank()))
        times = []
        for _ in range(reps):
            comm.Barrier()
            tic = time.perf_counter()
            for _ in range(rounds):
                comm.Allreduce(MPI.IN_PLACE, w, op=MPI.SUM)
                w /= size
            times.append((time.perf_counter() - tic) / rounds)
        result[str(d)] = float(np.median(times))
    if comm.Get_rank() == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
