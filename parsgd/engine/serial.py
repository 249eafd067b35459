"""The serial backend: all M workers in this process, the same numbers as the processes backend.

It is the debugging mode and the reference the parallel engine is tested against: the same
compiled blocks (``loop.run_ranks``), with every phase run for ranks 0..M-1 in turn instead
of behind a barrier.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parsgd.engine.coordinator import Sink
from parsgd.engine.loop import Hooks, Outcome, Position, run_ranks
from parsgd.engine.team import Team


class _SerialHooks(Hooks):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def row(self, row: dict[str, Any]) -> None:
        self.sink.row(row)

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        self.sink.checkpoint(trial, step, wall_s, W)


def run_serial(team: Team, start: Position, sink: Sink) -> tuple[Outcome, list[dict[str, float]]]:
    """Run every trial in this process; return the outcome and each rank's timings."""
    ranks = list(range(team.settings.workers))
    sink.started([])
    outcome = run_ranks(team, ranks, start, _SerialHooks(sink))
    return outcome, [team.timings(r) for r in ranks]
