"""Sets of steps as sorted int64 arrays: their union, and membership in one.

A run's plan is built from such sets (averaging, recording, global rounds), and at
``every: 1`` each holds every step of the run. numpy's ``np.union1d`` and ``np.isin`` go
through ``np.unique`` and a default (quick) sort: for 2M steps, numpy 2.4 took 4.6 s for one
``np.union1d`` on these machines (``np.unique`` hashes), and its quicksort 0.29 s. The sets
here are concatenations of sorted runs, which a stable sort merges in linear time (8 ms for
2M), and membership in a sorted set is a binary search.
"""

from __future__ import annotations

import numpy as np


def union(*sets: np.ndarray) -> np.ndarray:
    """The sorted distinct values of int64 arrays (each sorted or not): ``np.union1d``."""
    merged = np.sort(np.concatenate([np.asarray(s, dtype=np.int64) for s in sets]), kind="stable")
    if merged.size == 0:
        return merged
    keep = np.empty(merged.size, dtype=bool)
    keep[0] = True
    np.not_equal(merged[1:], merged[:-1], out=keep[1:])
    return merged[keep]


def member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """``np.isin(values, sorted_set)`` for a sorted ``sorted_set``: a binary search each."""
    if sorted_set.size == 0:
        return np.zeros(np.shape(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return np.asarray(sorted_set[at] == values)
