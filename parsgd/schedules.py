"""Averaging and step-size schedules: pure functions of the step.

One schedule object means the same thing everywhere: both backends, the trace's ``syncs``
column and ``--dry-run`` all read the averaging steps from ``averaging_steps``.
Steps are counted per worker, 1-based: "step t" is the state after t local SGD steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.stepsets import Listed, Piece, Progression, StepSet

# The config is a mapping of sections; schedules read their own (config.load calls StepSize).
Config = dict[str, Any]


@dataclass(frozen=True)
class AveragingSchedule:
    """When the workers replace their models by the average.

    ``every`` is an interval (int) or ``"end"`` (one-shot); ``at`` an explicit list;
    ``phases`` a list of ``{steps, every}``; ``warmup`` averages every step first;
    ``growth`` multiplies the interval after each round.
    """

    every: int | str | None = None
    at: tuple[int, ...] | None = None
    phases: tuple[tuple[int, int | str], ...] | None = None
    warmup: int = 0
    growth: float = 1.0

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> AveragingSchedule:
        phases = section.get("phases")
        at = section.get("at")
        return cls(
            every=section.get("every"),
            at=tuple(at) if at is not None else None,
            phases=tuple((p["steps"], p["every"]) for p in phases) if phases else None,
            warmup=section.get("warmup", 0),
            growth=section.get("growth", 1.0),
        )

    def averaging_steps(self, total_steps: int) -> np.ndarray:
        """Sorted int64 array of the steps in [1, total_steps] that end with an average.

        The last step is always included: the output of a run is the average.
        """
        return self.step_set(total_steps).steps()

    def step_set(self, total_steps: int) -> StepSet:
        """``averaging_steps`` held as progressions (what the run's plan reads)."""
        if self.at is not None:
            steps = StepSet.of(list(self.at))
        elif self.phases is not None:
            steps = _phased(self.phases)
        else:
            steps = _periodic(self.every, self.warmup, self.growth, total_steps)
        return steps.up_to(total_steps).with_step(total_steps)

    def describe(self) -> str:
        if self.at is not None:
            return f"at {len(self.at)} listed steps"
        if self.phases is not None:
            return "phases " + ", ".join(f"{s} steps every {e}" for s, e in self.phases)
        parts = ["one-shot" if self.every == "end" else f"every {self.every}"]
        if self.warmup:
            parts.insert(0, f"every step for {self.warmup} steps, then")
        if self.growth != 1.0:
            parts.append(f"growing x{self.growth:g} per round")
        return " ".join(parts)


def _periodic(every: int | str | None, warmup: int, growth: float, total: int) -> StepSet:
    warm = Progression.span(1, min(warmup, total))
    if every == "end" or every is None:
        return StepSet([warm])
    assert isinstance(every, int)
    if growth == 1.0:
        return StepSet([warm, Progression.span(warmup + every, total, every)])
    steps: list[int] = []
    t, interval = warmup, float(every)
    while True:
        if growth < 1.0 and interval < 1.5:  # every interval from here rounds to one step
            listed = Listed(np.array(steps, np.int64)) if steps else None
            return StepSet([warm, listed, Progression.span(t + 1, total)])
        t += max(1, round(interval))
        if t > total:
            break
        steps.append(t)
        interval *= growth
    return StepSet([warm, Listed(np.array(steps, np.int64)) if steps else None])


def _phased(phases: tuple[tuple[int, int | str], ...]) -> StepSet:
    """Each phase averages every H steps from its own start and at its end."""
    pieces: list[Piece | None] = []
    start = 0
    for length, every in phases:
        end = start + length
        periodic = None
        if every != "end":
            assert isinstance(every, int)
            periodic = Progression.span(start + every, end, every)
            pieces.append(periodic)
        if periodic is None or periodic.last != end:  # the phase's end, once
            pieces.append(Listed(np.array([end], np.int64)))
        start = end
    return StepSet(pieces)


def global_set(averaging: StepSet, global_every: int | str | None, total: int) -> StepSet:
    """The averaging rounds that average across nodes: all of them without ``global_every``;
    with it, those at multiples of it, and the last step (the output is the global average)."""
    if global_every is None:
        return averaging
    if global_every == "end":
        return StepSet([]).with_step(total) if total in averaging else StepSet([])
    assert isinstance(global_every, int)
    return rounds_at_multiples(averaging, global_every, total)


def rounds_at_multiples(averaging: StepSet, every: int, total: int) -> StepSet:
    """The rounds at multiples of ``every``, and the last step if it is a round: the global
    rounds of ``global_every``, and the rounds that are also recording steps (``eval_set``)."""
    rounds = averaging.multiples_of(every)
    return rounds.with_step(total) if total in averaging else rounds


def eval_steps(every: int, total_steps: int) -> np.ndarray:
    """Steps at which the collector records a trace row: 0, every, 2*every, ..., total."""
    return eval_set(every, total_steps).steps()


def eval_set(every: int, total_steps: int) -> StepSet:
    """``eval_steps`` held as a progression."""
    return StepSet([Progression.span(0, total_steps, every)]).with_step(total_steps)


@dataclass(frozen=True)
class StepSize:
    """The step size alpha_t as a pure function of the 0-based step index t.

    ``kind`` is constant, inverse (eta0 / (1 + t/t0)), inverse_sqrt (eta0 / sqrt(1 + t/t0)),
    step (eta0 * factor^(t // every)) or cosine (min + (eta0 - min)(1 + cos(pi t / T)) / 2).
    """

    eta0: float
    kind: str = "constant"
    t0: float = 100.0
    factor: float = 0.5
    every: int = 1000
    floor: float = 0.0
    total_steps: int = 1

    @classmethod
    def from_config(cls, config: Config) -> StepSize:
        spec, total = config["sgd"]["step_size"], config["sgd"]["steps"]
        if not isinstance(spec, dict):
            return cls(eta0=float(spec), total_steps=total)
        return cls(
            eta0=spec["eta0"],
            kind=spec["kind"],
            t0=spec["t0"],
            factor=spec["factor"],
            every=spec["every"],
            floor=spec["min"],
            total_steps=total,
        )

    def values(self, start: int, stop: int) -> np.ndarray:
        """Step sizes for steps start..stop-1, as float64."""
        t = np.arange(start, stop, dtype=np.float64)
        if self.kind == "constant":
            return np.full(stop - start, self.eta0, dtype=np.float64)
        if self.kind == "inverse":
            return self.eta0 / (1.0 + t / self.t0)
        if self.kind == "inverse_sqrt":
            return self.eta0 / np.sqrt(1.0 + t / self.t0)
        if self.kind == "step":
            return self.eta0 * self.factor ** np.floor(t / self.every)
        progress = np.minimum(t / max(1, self.total_steps), 1.0)
        return self.floor + 0.5 * (self.eta0 - self.floor) * (1.0 + np.cos(np.pi * progress))

    @property
    def largest(self) -> float:
        return max(self.eta0, self.floor)
