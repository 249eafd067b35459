"""Which rows of the pool each worker samples (``data.partition``): index lists, stored once.

    shared      every worker samples all n rows (no index lists at all)
    shards      a seeded permutation of the rows cut into M disjoint shards of n // M rows
                (the n mod M left-over rows belong to no shard; the pool loss still counts them)
    dirichlet   label skew as in federated-learning benchmarks (NIID-Bench, Li et al. 2021):
                the rows of each class, in a seeded random order, are split over the M
                workers in proportions p_c ~ Dirichlet(alpha, ..., alpha); a draw that leaves
                a worker without rows is redrawn (so every worker can take a step)

The M index lists live back to back in one int64 array (``rows``, in the arena: shared
memory for the processes backend) with ``offsets``; worker m's list is the view
``rows[offsets[m]:offsets[m + 1]]``, sorted. Nothing is copied per worker. Workers are
numbered globally across nodes, so with ``nodes > 1`` each of the nodes x workers ranks
gets its own list. The lists are a pure function of (seed, n, labels, M, kind, alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parsgd.data.synthetic import Arena
from parsgd.errors import DataError
from parsgd.rng import PARTITION_STREAM, generator

# Redraws of a Dirichlet split before giving up (a tiny alpha with many workers leaves
# some worker empty in most draws).
_MAX_DRAWS = 1000


@dataclass(frozen=True)
class Partition:
    """M index lists over a pool of ``n`` rows (``rows`` None: every worker has all rows)."""

    n: int
    workers: int
    rows: np.ndarray | None = None
    offsets: np.ndarray | None = None

    @property
    def shared(self) -> bool:
        return self.rows is None

    def of(self, worker: int) -> np.ndarray | None:
        """Worker ``worker``'s sorted row indices (a view), or None for the whole pool."""
        if self.rows is None or self.offsets is None:
            return None
        return self.rows[self.offsets[worker] : self.offsets[worker + 1]]

    def size(self, worker: int) -> int:
        rows = self.of(worker)
        return self.n if rows is None else int(rows.shape[0])


def make_partition(
    kind: str,
    alpha: float | None,
    n: int,
    labels: np.ndarray | None,
    workers: int,
    seed: int,
    arena: Arena,
) -> Partition:
    """Build the partition of ``n`` rows over ``workers`` workers; DataError if impossible.

    ``labels`` (length n) are needed by ``dirichlet`` only.
    """
    if kind == "shared":
        return Partition(n, workers)
    if workers > n:
        raise DataError(
            f"data.partition {kind} needs at least one row per worker: {workers} workers "
            f"(workers x nodes) but the pool has {n} rows"
        )
    if kind == "shards":
        lists = _shards(n, workers, seed)
    elif kind == "dirichlet":
        if labels is None:
            raise DataError("data.partition dirichlet needs class labels; these data have none")
        assert alpha is not None  # validated: dirichlet has alpha
        lists = _dirichlet(np.asarray(labels), workers, alpha, seed)
    else:
        raise ValueError(kind)
    offsets = np.zeros(workers + 1, np.int64)
    offsets[1:] = np.cumsum([len(part) for part in lists])
    rows = arena.empty((int(offsets[-1]),), np.int64)
    for m, part in enumerate(lists):
        rows[offsets[m] : offsets[m + 1]] = np.sort(part)
    return Partition(n, workers, rows, offsets)


def _shards(n: int, workers: int, seed: int) -> list[np.ndarray]:
    order = generator(seed, PARTITION_STREAM, 0).permutation(n)
    size = n // workers
    return [order[m * size : (m + 1) * size] for m in range(workers)]


def dirichlet_split(
    labels: np.ndarray, workers: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """One draw: each class's rows (shuffled) cut over the workers at Dirichlet proportions."""
    parts: list[list[np.ndarray]] = [[] for _ in range(workers)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(workers, alpha))
        cuts = np.minimum((np.cumsum(shares) * len(members)).astype(np.int64), len(members))
        cuts[-1] = len(members)
        for m, piece in enumerate(np.split(members, cuts[:-1])):
            parts[m].append(piece)
    return [np.concatenate(p) if p else np.empty(0, np.int64) for p in parts]


def _dirichlet(labels: np.ndarray, workers: int, alpha: float, seed: int) -> list[np.ndarray]:
    for attempt in range(_MAX_DRAWS):
        lists = dirichlet_split(
            labels, workers, alpha, generator(seed, PARTITION_STREAM, 1, attempt)
        )
        if min(len(part) for part in lists) > 0:
            return lists
    raise DataError(
        f"data.partition dirichlet with alpha {alpha:g} left some of the {workers} workers "
        f"without rows in {_MAX_DRAWS} draws; use a larger data.partition.alpha or fewer workers"
    )
