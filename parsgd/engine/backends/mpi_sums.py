"""The global round's sum across MPI ranks, in rank order: the messages and the arithmetic.

``RankOrderSum.global_sum`` gives every rank, element by element, ``((s_0 + s_1) + s_2) +
... + s_{R-1}`` over the ranks' vectors in rank order: the same bits on every rank, those
of the shared-memory meeting with ``nodes: R`` groups (engine/meetings.py), never
MPI_Allreduce's order. It is the round ``parsgd bench`` times against an Allreduce of the
same vector (target: at most 1.5x), so each round makes as few calls as it can:

- small vectors (up to ``SMALL_BYTES``): the vector is copied into its row of a buffer of
  R rows and one persistent in-place Allgather (MPI-4 ``Allgather_init``, made at the
  first round of that size, started anew each round) fills the others; then the compiled
  ordered sum. At d = 1e3 a round built afresh each time (Iallgather) spent more on
  building its request than the Allreduce takes in all.
- large ones: an Alltoall of R chunks (rank r gets chunk r of every vector; a rank's own
  part does not move), rank r adds its chunk's parts in rank order straight into ``out``,
  then an in-place Allgather of the summed chunks. Each rank moves about 2d, as
  Allreduce's reduce-scatter and allgather do, not R*d; no vector is copied.

Every request is polled by the link's ``wait`` (heartbeats meanwhile), so no round waits
forever on a lost peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

SMALL_BYTES = 64 * 1024  # up to this per rank: Allgather whole vectors
_BLOCK = 512  # columns of the ordered sum's block (R blocks and out's stay in L1)


class _Chunks:
    """A large vector's chunks: rank r sums chunk r (``counts[r]`` elements from
    ``starts[r]``). ``parts`` receives every other rank's part of this rank's chunk (this
    rank's own row is unused: its part is read from its vector)."""

    def __init__(self, d: int, size: int, rank: int) -> None:
        base, extra = divmod(d, size)
        self.counts = [base + (r < extra) for r in range(size)]
        self.starts = [sum(self.counts[:r]) for r in range(size)]
        self.mine = slice(self.starts[rank], self.starts[rank] + self.counts[rank])
        count = self.counts[rank]
        self.send_counts = [0 if r == rank else self.counts[r] for r in range(size)]
        self.receive_counts = [0 if r == rank else count for r in range(size)]
        self.receive_starts = [r * count for r in range(size)]
        self.parts = np.zeros((size, count))


class RankOrderSum:
    """The global sums of one communicator (every rank calls them alike: collective)."""

    def __init__(self, MPI: Any, comm: Any, wait: Callable[[Any], None]) -> None:
        self.MPI, self.comm, self.wait = MPI, comm, wait
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._gathers: dict[int, tuple[np.ndarray, Any]] = {}  # by size: rows, request
        self._chunks: dict[int, _Chunks] = {}

    def global_sum(self, local: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out`` = the ranks' ``local`` vectors (float64, 1-d, contiguous) added in rank
        order."""
        d = local.shape[0]
        if d * 8 <= SMALL_BYTES or self.size == 1:
            rows, request = self._gather(d)
            rows[self.rank] = local
            if request is None:  # an MPI before 4.0: no persistent collectives
                request = self.comm.Iallgather(self.MPI.IN_PLACE, rows)
            else:
                request.Start()
            self.wait(request)
            ordered_sum(rows, out)
            return out
        if d not in self._chunks:
            self._chunks[d] = _Chunks(d, self.size, self.rank)
        plan, double = self._chunks[d], self.MPI.DOUBLE
        self.wait(
            self.comm.Ialltoallv(
                [local, plan.send_counts, plan.starts, double],
                [plan.parts, plan.receive_counts, plan.receive_starts, double],
            )
        )
        ordered_sum_with(plan.parts, local[plan.mine], self.rank, out[plan.mine])
        self.wait(self.comm.Iallgatherv(self.MPI.IN_PLACE, [out, plan.counts, plan.starts, double]))
        return out

    def _gather(self, d: int) -> tuple[np.ndarray, Any]:
        """A small size's rows and persistent Allgather (None where the MPI has none), made
        at its first round, on every rank alike."""
        if d not in self._gathers:
            rows = np.zeros((self.size, d))
            try:
                request = self.comm.Allgather_init(self.MPI.IN_PLACE, rows)
            except NotImplementedError:  # mpi4py's word for a function the MPI lacks
                request = None
            self._gathers[d] = (rows, request)
        return self._gathers[d]

    def free(self) -> None:
        """Free the persistent requests (all inactive between rounds), before the
        communicator is freed."""
        for _, request in self._gathers.values():
            if request is not None:
                request.Free()
        self._gathers.clear()


@njit("void(float64[:, ::1], float64[::1], int64, float64[::1])", cache=True, nogil=True)
def ordered_sum_with(rows: np.ndarray, own: np.ndarray, rank: int, out: np.ndarray) -> None:
    """``out = rows[0] + rows[1] + ...``, added in row order (no pairwise reassociation),
    with row ``rank`` read from ``own`` instead (this rank's part, which then need not be
    copied into ``rows``): element by element the bits of numpy's ``out[:] = rows[0];
    out += rows[1]; ...``.

    Compiled (with its signature, so at import: before MPI_Init, whose start-up barrier
    waits for a rank that compiles into a cold cache) and blocked: one block of ``out``
    stays in L1 while every row's block is added, so each row is read once and ``out``
    written once. Slices start at index 0 so that LLVM sees the unit stride.
    """
    count, d = rows.shape
    for b in range(0, d, _BLOCK):
        n = min(_BLOCK, d - b)
        acc = out[b : b + n]
        first = own[b : b + n] if rank == 0 else rows[0, b : b + n]
        for k in range(n):
            acc[k] = first[k]
        for r in range(1, count):
            row = own[b : b + n] if r == rank else rows[r, b : b + n]
            for k in range(n):
                acc[k] += row[k]


@njit("void(float64[:, ::1], float64[::1])", cache=True, nogil=True)
def ordered_sum(rows: np.ndarray, out: np.ndarray) -> None:
    """``out = rows[0] + rows[1] + ...`` in row order (``ordered_sum_with``'s bits)."""
    ordered_sum_with(rows, rows[0], 0, out)
