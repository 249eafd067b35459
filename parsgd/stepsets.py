"""Sets of steps: sorted int64 arrays (their union), and ``StepSet``, a set of steps held as
arithmetic progressions, which is how a run's schedules are held.

A run's plan is built from such sets (averaging, recording, global rounds), and at
``every: 1`` each holds every step of the run: held as arrays, a plan of 16M steps took 3 s
and 810 MB to build on these machines, most of both in first touching fresh pages. A
``StepSet`` answers what the plan asks of it (how many steps up to s, the steps between two
steps, the k-th step) from a few progressions, so a plan costs what its window costs.

For arrays: numpy's ``np.union1d`` goes through ``np.unique`` and a default (quick) sort:
for 2M steps, numpy 2.4 took 4.6 s for one ``np.union1d`` on these machines (``np.unique``
hashes), and its quicksort 0.29 s. The sets here are concatenations of sorted runs, which a
stable sort merges in linear time (8 ms for 2M). Which of a window's steps are in which set
is the plan's compiled merge (``engine/plan._merge``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import gcd

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


def kth_step(count: Callable[[int], int], k: int, lo: int, hi: int) -> int:
    """The k-th (0-based) of a set of steps that ``count`` counts (how many are <= s),
    found by binary search between ``lo`` (count(lo) <= k) and ``hi`` (count(hi) > k)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(mid) > k:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class Progression:
    """The steps ``first, first + every, ...`` up to ``last`` (a multiple of ``every`` past
    ``first``; ``Progression.span`` makes one from any bounds)."""

    first: int
    last: int
    every: int = 1

    @staticmethod
    def span(first: int, last: int, every: int = 1) -> Progression | None:
        """``first, first + every, ... <= last``; None if that is empty."""
        if last < first:
            return None
        return Progression(first, first + (last - first) // every * every, every)

    def count(self, s: int) -> int:
        """How many steps are <= s."""
        if s < self.first:
            return 0
        return (min(s, self.last) - self.first) // self.every + 1

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The steps in (lo, hi]."""
        k, end = self.count(lo), min(hi, self.last)
        start = self.first + k * self.every
        if start > end:
            return np.empty(0, dtype=np.int64)
        return np.arange(start, end + 1, self.every, dtype=np.int64)

    def multiples_of(self, g: int) -> Progression | None:
        """The steps that are multiples of g: a progression of step lcm(every, g), or None."""
        common = gcd(self.every, g)
        if self.first % common:
            return None
        # first + k every = 0 (mod g): k = -(first / c) (every / c)^-1 (mod g / c).
        modulus = g // common
        k = (-(self.first // common) * pow(self.every // common, -1, modulus)) % modulus
        return Progression.span(self.first + k * self.every, self.last, self.every * modulus)


@dataclass(frozen=True)
class Listed:
    """Steps listed one by one (sorted, distinct): schedules with no progression in them."""

    steps: np.ndarray

    @property
    def first(self) -> int:
        return int(self.steps[0])

    @property
    def last(self) -> int:
        return int(self.steps[-1])

    def count(self, s: int) -> int:
        return int(np.searchsorted(self.steps, s, side="right"))

    def between(self, lo: int, hi: int) -> np.ndarray:
        return self.steps[self.count(lo) : self.count(hi)]

    def multiples_of(self, g: int) -> Listed | None:
        kept = self.steps[self.steps % g == 0]
        return Listed(kept) if kept.size else None


Piece = Progression | Listed


class StepSet:
    """A set of steps as disjoint pieces (progressions and lists); every question it answers
    costs O(pieces), or O(pieces log steps) for the k-th step, however many steps it holds."""

    def __init__(self, pieces: list[Piece | None]) -> None:
        self.pieces = [p for p in pieces if p is not None]

    @staticmethod
    def of(steps: np.ndarray | list[int]) -> StepSet:
        """The distinct values of ``steps``, listed."""
        values = union(np.asarray(steps, dtype=np.int64))
        return StepSet([Listed(values)] if values.size else [])

    def count(self, s: int) -> int:
        """How many steps are <= s."""
        return sum(p.count(s) for p in self.pieces)

    @property
    def size(self) -> int:
        return sum(p.count(p.last) for p in self.pieces)

    def __contains__(self, s: int) -> bool:
        return self.count(s) > self.count(s - 1)

    def between(self, lo: int, hi: int) -> np.ndarray:
        """The steps in (lo, hi], sorted."""
        parts = [part for part in (p.between(lo, hi) for p in self.pieces) if part.size]
        if len(parts) == 1:  # the usual case: no merge
            return parts[0]
        return union(np.empty(0, dtype=np.int64), *parts)

    def steps(self) -> np.ndarray:
        """Every step, as one array (for what reads them all: ``--dry-run``, the theory)."""
        return self.between(-(1 << 62), 1 << 62)

    def nth(self, k: int) -> int:
        """The k-th step (0-based), which must exist."""
        lo = min(p.first for p in self.pieces) - 1
        return kth_step(self.count, k, lo, max(p.last for p in self.pieces))

    def with_step(self, s: int) -> StepSet:
        """This set and step s."""
        return self if s in self else StepSet([*self.pieces, Listed(np.array([s], np.int64))])

    def multiples_of(self, g: int) -> StepSet:
        return StepSet([p.multiples_of(g) for p in self.pieces])

    def up_to(self, total: int) -> StepSet:
        """The steps in [1, total]."""
        out: list[Piece | None] = []
        for p in self.pieces:
            if isinstance(p, Progression):
                k = p.count(0)  # steps < 1 dropped
                out.append(Progression.span(p.first + k * p.every, min(p.last, total), p.every))
            else:
                kept = p.between(0, total)
                out.append(Listed(kept) if kept.size else None)
        return StepSet(out)
