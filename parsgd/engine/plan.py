"""The meeting plan of a trial: every step where the workers meet, and why.

Workers meet where the schedule averages and where the collector records a trace row; between
two meetings each worker runs its local steps alone. The plan is computed once per run from
the config, so both backends walk exactly the same sequence of meetings. It is held as
arrays, not objects: averaging every step over a million steps is a million meetings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from parsgd.config.load import Config
from parsgd.schedules import AveragingSchedule, eval_steps


class Meeting(NamedTuple):
    step: int
    average: bool
    record: bool
    checkpoint: bool
    syncs: int  # averaging rounds done once this meeting is over


@dataclass(frozen=True)
class Plan:
    total_steps: int
    steps: np.ndarray  # int64, sorted, starts at 0 (the initial trace row)
    average: np.ndarray  # bool
    record: np.ndarray  # bool
    checkpoint: np.ndarray  # bool
    syncs: np.ndarray  # int64, cumulative averaging rounds

    @classmethod
    def from_config(cls, config: Config) -> Plan:
        total = config["sgd"]["steps"]
        if config["method"] in ("hogwild", "single"):  # one model: nothing to average
            averaging = np.empty(0, dtype=np.int64)
        else:
            averaging = AveragingSchedule.from_config(config["averaging"]).averaging_steps(total)
        recording = eval_steps(config["eval"]["every"], total)
        steps = np.union1d(averaging, recording)
        average = np.isin(steps, averaging)
        syncs = np.cumsum(average, dtype=np.int64)
        every = config["checkpoint"]["every"]
        checkpoint = (
            average & (syncs % every == 0) & (steps < total) if every else np.zeros_like(average)
        )
        return cls(total, steps, average, np.isin(steps, recording), checkpoint, syncs)

    def meetings_after(self, step: int) -> Iterator[Meeting]:
        """The meetings still ahead of a worker standing at ``step`` (-1: a fresh trial)."""
        first = int(np.searchsorted(self.steps, step, side="right"))
        columns = (self.steps, self.average, self.record, self.checkpoint, self.syncs)
        for row in zip(*(column[first:].tolist() for column in columns), strict=True):
            yield Meeting(*row)

    @property
    def sync_count(self) -> int:
        return int(self.syncs[-1])
