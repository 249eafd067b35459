"""The meeting plan of a trial: every step where the workers meet, why, and at what level.

Workers meet where the schedule averages and where the collector records a trace row; between
two meetings each worker runs its local steps alone. Each meeting has a level: a group
(node) averaging round, or a global meeting where every worker meets (global averaging
rounds, and every recording or checkpoint meeting: the trace reports the global average and
a stop or a divergence is decided there, the same on every worker). The plan is computed once
per run from the run spec, so both backends walk exactly the same sequence of meetings. It is
held as arrays, not objects: averaging every step over a million steps is a million meetings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parsgd import stepsets
from parsgd.config.spec import RunSpec
from parsgd.engine.control import GLOBAL, GROUP, GROUP_RECORDED
from parsgd.schedules import eval_steps


@dataclass(frozen=True)
class Plan:
    total_steps: int
    steps: np.ndarray  # int64, sorted, starts at 0 (the initial trace row)
    average: np.ndarray  # bool
    record: np.ndarray  # bool
    checkpoint: np.ndarray  # bool
    syncs: np.ndarray  # int64, cumulative averaging rounds
    level: np.ndarray  # int64: GROUP, GLOBAL or GROUP_RECORDED (see control)
    syncs_global: np.ndarray  # int64, cumulative global averaging rounds

    @classmethod
    def from_spec(cls, spec: RunSpec) -> Plan:
        total = spec.sgd.steps
        if spec.method in ("hogwild", "single"):  # one model: nothing to average
            averaging = np.empty(0, dtype=np.int64)
        else:
            averaging = spec.averaging.schedule.averaging_steps(total)
        global_steps = global_rounds(averaging, spec.averaging.global_every, total)
        recording = eval_steps(spec.eval.every, total)
        steps = stepsets.union(averaging, recording)
        average = stepsets.member(steps, averaging)
        syncs = np.cumsum(average, dtype=np.int64)
        every = spec.checkpoint.every
        checkpoint = (
            average & (syncs % every == 0) & (steps < total) if every else np.zeros_like(average)
        )
        record = stepsets.member(steps, recording)
        is_global = stepsets.member(steps, global_steps) | ~average
        level = np.where(is_global, GLOBAL, np.where(record | checkpoint, GROUP_RECORDED, GROUP))
        syncs_global = np.cumsum(average & is_global, dtype=np.int64)
        return cls(total, steps, average, record, checkpoint, syncs, level, syncs_global)

    @property
    def sync_count(self) -> int:
        return int(self.syncs[-1])

    @property
    def global_sync_count(self) -> int:
        return int(self.syncs_global[-1])


def global_rounds(averaging: np.ndarray, global_every: int | str | None, total: int) -> np.ndarray:
    """The averaging rounds that average across nodes: all of them without ``global_every``;
    with it, those at multiples of it, and the last step (the output is the global average)."""
    if global_every is None:
        return averaging
    if global_every == "end":
        return averaging[averaging == total]
    assert isinstance(global_every, int)
    return averaging[(averaging % global_every == 0) | (averaging == total)]
