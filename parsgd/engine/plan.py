"""The meeting plan of a trial: every step where the workers meet, why, and at what level.

Workers meet where the schedule averages and where the collector records a trace row; between
two meetings each worker runs its local steps alone. Each meeting has a level: a group
(node) averaging round, or a global meeting where every worker meets (global averaging
rounds, and every recording or checkpoint meeting: the trace reports the global average and
a stop or a divergence is decided there, the same on every worker). The plan is computed
from the run spec alone, so every backend walks exactly the same sequence of meetings.

Averaging every step over a million steps is a million meetings, so the plan is not held
whole: it holds the schedules as step sets (``stepsets.StepSet``: progressions), numbers the
meetings 0..n-1 and hands them out as ``Window``s of arrays, a window at a time, as the loop
walks them (``Cursor``). What it costs is a window's worth, however long the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from parsgd.config.spec import RunSpec
from parsgd.engine.control import GLOBAL, GROUP, GROUP_RECORDED
from parsgd.schedules import eval_set, global_set, rounds_at_multiples
from parsgd.stepsets import StepSet, kth_step

# Meetings a window holds: 64K meetings are ~2.3 MB of arrays and ~1 ms to make (two
# binary searches, then the compiled passes below), against ~20 ms of meetings at every 1.
WINDOW = 1 << 16


@dataclass(frozen=True)
class Window:
    """Meetings ``first`` .. ``first + len(steps) - 1`` of a trial, as arrays."""

    first: int
    steps: np.ndarray  # int64, sorted
    average: np.ndarray  # bool
    record: np.ndarray  # bool
    checkpoint: np.ndarray  # bool
    syncs: np.ndarray  # int64, averaging rounds through each meeting
    level: np.ndarray  # int64: GROUP, GLOBAL or GROUP_RECORDED (see control)
    syncs_global: np.ndarray  # int64, global averaging rounds through each meeting
    python: np.ndarray  # bool: where Python takes over (recording and checkpoint meetings)
    # int64: for each meeting, the end (exclusive, in the window) of a block from it: just
    # past the next Python meeting, or the window's end.
    block_end: np.ndarray

    @property
    def end(self) -> int:
        return self.first + len(self.steps)


class Plan:
    """A trial's meetings: the union of the averaging and recording steps, numbered."""

    def __init__(
        self,
        total_steps: int,
        averaging: StepSet,
        eval_every: int,
        global_rounds: StepSet,
        checkpoint_every: int | None,
    ) -> None:
        self.total_steps = total_steps
        self.averaging, self.global_rounds = averaging, global_rounds
        self.recording = eval_set(eval_every, total_steps)
        self.checkpoint_every = checkpoint_every
        # Meetings up to s: |A| + |R| - |A and R| up to s, each a few progressions' count.
        self._both = rounds_at_multiples(averaging, eval_every, total_steps)
        self.meetings = self.count(total_steps)
        self.sync_count = averaging.size
        self.global_sync_count = global_rounds.size

    @classmethod
    def from_spec(cls, spec: RunSpec) -> Plan:
        total = spec.sgd.steps
        if spec.method in ("hogwild", "single"):  # one model: nothing to average
            averaging = StepSet([])
        else:
            averaging = spec.averaging.schedule.step_set(total)
        rounds = global_set(averaging, spec.averaging.global_every, total)
        return cls(total, averaging, spec.eval.every, rounds, spec.checkpoint.every)

    def count(self, step: int) -> int:
        """How many meetings are at steps <= ``step``."""
        return self.averaging.count(step) + self.recording.count(step) - self._both.count(step)

    def index_of(self, step: int, side: str = "left") -> int:
        """``np.searchsorted`` of the meetings' steps: the first meeting at (left) or after
        (right) ``step``."""
        return self.count(step - 1 if side == "left" else step)

    def step_of(self, index: int) -> int:
        """The step of meeting ``index`` (0 <= index < meetings)."""
        return kth_step(self.count, index, -1, self.total_steps)

    def window(self, lo: int, hi: int) -> Window:
        """Meetings lo .. hi-1 (0 <= lo <= hi <= meetings)."""
        if hi <= lo:
            empty = np.empty(0, dtype=np.int64)
            flags = np.empty(0, dtype=bool)
            return Window(lo, empty, flags, flags, flags, empty, empty, empty, flags, empty)
        before, last = self.step_of(lo) - 1, self.step_of(hi - 1)
        averaging = self.averaging.between(before, last)
        recording = self.recording.between(before, last)
        steps, average, record, syncs = _merge(averaging, recording, self.averaging.count(before))
        assert len(steps) == hi - lo, (lo, hi, len(steps))
        if self.global_rounds is self.averaging:  # no global_every: every round is global
            is_round, syncs_global = average, syncs
        else:
            rounds = self.global_rounds.between(before, last)
            is_round, syncs_global = _within(steps, rounds, self.global_rounds.count(before))
        checkpoint, python, level, block_end = _levels(
            steps, average, record, is_round, syncs, self.checkpoint_every or 0, self.total_steps
        )
        return Window(
            lo, steps, average, record, checkpoint, syncs, level, syncs_global, python, block_end
        )


# A window's step sets are sorted and small, and numpy's membership (a binary search a
# step) and cumulative sums were 75 ns a meeting of the window's making, a fifth of a
# meeting at every 1 on small d: one compiled pass each does both. Compiled at the first
# call, not at import (numba must start as numba_start.py has it), which ``warmup`` makes
# before the workers fork.
@njit(cache=True)
def _merge(
    a: np.ndarray, r: np.ndarray, a_before: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sorted union of sorted a and r; whether each step is in a and in r; and how many
    of a's steps are at or before it, counting ``a_before`` before the first."""
    steps = np.empty(len(a) + len(r), dtype=np.int64)
    in_a = np.zeros(len(steps), dtype=np.bool_)
    in_r = np.zeros(len(steps), dtype=np.bool_)
    counted = np.empty(len(steps), dtype=np.int64)
    i = j = k = 0
    while i < len(a) or j < len(r):
        if j == len(r) or (i < len(a) and a[i] <= r[j]):
            steps[k], in_a[k] = a[i], True
            if j < len(r) and a[i] == r[j]:
                in_r[k] = True
                j += 1
            i += 1
        else:
            steps[k], in_r[k] = r[j], True
            j += 1
        counted[k] = a_before + i
        k += 1
    return steps[:k], in_a[:k], in_r[:k], counted[:k]


@njit(cache=True)
def _within(steps: np.ndarray, subset: np.ndarray, before: int) -> tuple[np.ndarray, np.ndarray]:
    """Whether each of sorted ``steps`` is in sorted ``subset`` (a subset of them), and how
    many of the subset are at or before it, counting ``before`` before the first."""
    out = np.zeros(len(steps), dtype=np.bool_)
    counted = np.empty(len(steps), dtype=np.int64)
    j = 0
    for k in range(len(steps)):
        if j < len(subset) and steps[k] == subset[j]:
            out[k] = True
            j += 1
        counted[k] = before + j
    return out, counted


@njit(cache=True)
def _levels(
    steps: np.ndarray, average: np.ndarray, record: np.ndarray, is_round: np.ndarray,
    syncs: np.ndarray, every: int, total: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Checkpoints (every ``every``-th round but the last step; 0: none), where Python takes
    over, each meeting's level, and where a block from each meeting ends: just past the
    next Python meeting, or the window's end. One pass from the end."""
    n = len(steps)
    checkpoint = np.zeros(n, dtype=np.bool_)
    python = np.zeros(n, dtype=np.bool_)
    level = np.empty(n, dtype=np.int64)
    block_end = np.empty(n, dtype=np.int64)
    end = n
    for k in range(n - 1, -1, -1):
        checkpoint[k] = every > 0 and average[k] and syncs[k] % every == 0 and steps[k] < total
        python[k] = record[k] or checkpoint[k]
        if python[k]:
            end = k + 1
        block_end[k] = end
        if is_round[k] or not average[k]:
            level[k] = GLOBAL
        else:
            level[k] = GROUP_RECORDED if python[k] else GROUP
    return checkpoint, python, level, block_end


def compile_kernels() -> None:
    """Compile (or load from numba's cache) the window kernels, as ``warmup`` does before
    the workers fork."""
    none, flags = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.bool_)
    _merge(none, none, 0)
    _within(none, none, 0)
    _levels(none, flags, flags, flags, none, 0, 1)


class Cursor:
    """The window of the plan that holds a given meeting, made when the walk reaches it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.current = plan.window(0, 0)

    def at(self, index: int) -> Window:
        """A window that holds meeting ``index`` (its first meeting or a later one's)."""
        w = self.current
        if not w.first <= index < w.end:
            self.current = w = self.plan.window(index, min(self.plan.meetings, index + WINDOW))
        return w
