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

from parsgd.config.spec import RunSpec
from parsgd.engine.control import GLOBAL, GROUP, GROUP_RECORDED
from parsgd.schedules import eval_set
from parsgd.stepsets import StepSet, kth_step, member, union

# Meetings a window holds: 64K meetings are ~2.3 MB of arrays, and at every 1 a few
# milliseconds of meetings, so the window's making (a few binary searches) is noise.
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
        self._both = _recorded_rounds(averaging, eval_every, total_steps)
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
        steps = union(averaging, recording)
        assert len(steps) == hi - lo, (lo, hi, len(steps))
        average = member(steps, averaging)
        record = member(steps, recording)
        syncs = self.averaging.count(before) + np.cumsum(average, dtype=np.int64)
        is_round = member(steps, self.global_rounds.between(before, last))
        syncs_global = self.global_rounds.count(before) + np.cumsum(is_round, dtype=np.int64)
        every = self.checkpoint_every
        if every:
            checkpoint = average & (syncs % every == 0) & (steps < self.total_steps)
        else:
            checkpoint = np.zeros_like(average)
        is_global = is_round | ~average
        python = record | checkpoint
        level = np.where(is_global, GLOBAL, np.where(python, GROUP_RECORDED, GROUP))
        breaks = np.flatnonzero(python)
        after = np.searchsorted(breaks, np.arange(len(steps)))
        block_end = np.append(breaks + 1, len(steps))[after]
        return Window(
            lo, steps, average, record, checkpoint, syncs, level, syncs_global, python, block_end
        )


def _recorded_rounds(averaging: StepSet, eval_every: int, total: int) -> StepSet:
    """The averaging steps that are also recording steps (``eval_set``: the multiples of
    ``eval_every`` and the last step)."""
    both = averaging.multiples_of(eval_every)
    return both.with_step(total) if total in averaging else both


def global_set(averaging: StepSet, global_every: int | str | None, total: int) -> StepSet:
    """The averaging rounds that average across nodes: all of them without ``global_every``;
    with it, those at multiples of it, and the last step (the output is the global average)."""
    if global_every is None:
        return averaging
    if global_every == "end":
        return StepSet([]).with_step(total) if total in averaging else StepSet([])
    assert isinstance(global_every, int)
    rounds = averaging.multiples_of(global_every)
    return rounds.with_step(total) if total in averaging else rounds


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
