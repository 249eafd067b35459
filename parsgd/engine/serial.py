"""The serial backend: all M workers in this process, the same numbers as the processes backend.

It is the debugging mode and the reference the parallel engine is tested against: the same
``run_ranks`` loop, with every phase run for ranks 0..M-1 in turn instead of behind a barrier.
"""

from __future__ import annotations

from typing import Any

from parsgd.engine.coordinator import Sink
from parsgd.engine.plan import Meeting
from parsgd.engine.team import Hooks, Outcome, Position, Team, run_ranks


class _SerialHooks(Hooks):
    def __init__(self, team: Team, sink: Sink) -> None:
        self.team, self.sink = team, sink

    def row(self, row: dict[str, Any]) -> None:
        self.sink.row(row)

    def checkpoint(self, trial: int, meeting: Meeting, wall_s: float) -> None:
        self.sink.checkpoint(trial, meeting.step, wall_s, self.team.state.W.copy())


def run_serial(team: Team, start: Position, sink: Sink) -> tuple[Outcome, list[dict[str, float]]]:
    """Run every trial in this process; return the outcome and each rank's timings."""
    ranks = list(range(team.settings.workers))
    sink.started([])
    outcome = run_ranks(team, ranks, lambda: None, start, _SerialHooks(team, sink))
    return outcome, [team.timings(r) for r in ranks]
