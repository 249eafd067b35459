"""Final values against a swept config key: the numbers behind ``parsgd plot --kind final``.

One series per combination of ``--by`` values; along it one point per value of the x key
(e.g. ``averaging.every``): the mean over every trial of the runs at that point of the
trace column's value at the trial's last row, its standard error, and, with ``--theory``,
the closed form of ``parsgd.analysis.theory_curves`` at the run's last step. An averaging
interval of ``end`` (one-shot) sits at H = ``sgd.steps``, where it belongs on the H axis.
Pure functions of loaded runs, no matplotlib (drawn by ``parsgd.analysis.final_lines``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.analysis.runs import Run, config_value, final_rows, group_runs
from parsgd.analysis.theory_curves import theory_curve
from parsgd.compact import compact_value
from parsgd.errors import ConfigError


@dataclass
class FinalSeries:
    """One line of a final-value figure: per x value its position, tick text, the mean and
    standard error over ``trials[j]`` trials, and the closed form (None where unknown)."""

    label: str
    values: tuple[object, ...]
    positions: np.ndarray
    ticks: list[str]
    mean: np.ndarray
    stderr: np.ndarray
    trials: np.ndarray
    theory: np.ndarray | None = None


def x_position(key: str, value: Any, run: Run) -> tuple[float, str]:
    """Where a value of the x key sits on the axis, and its tick text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value), compact_value(value)
    if key == "averaging.every" and value == "end" and run.spec is not None:
        steps = run.spec.sgd.steps
        return float(steps), f"one-shot\n(H = {steps})"
    raise ConfigError(
        f"--x {key}: --kind final needs numbers along the x axis (or averaging.every: end); "
        f"got {value!r}"
    )


def compute_finals(
    runs: Sequence[Run], *, x_key: str, y: str, by: Sequence[str], theory: bool = False
) -> tuple[list[FinalSeries], list[str]]:
    """One series per ``by`` group, one point per value of ``x_key``; (series, warnings)."""
    series, notes = [], []
    for group in group_runs(runs, [k for k in by if k != x_key]):
        points = group_runs(group.runs, [x_key])
        positions, ticks, means, errors, counts, predicted = [], [], [], [], [], []
        for point in points:
            first = point.runs[0]
            position, tick = x_position(x_key, config_value(first.config, x_key), first)
            finals = final_rows(point.trials).get(y, np.array([]))
            finals = finals[np.isfinite(finals)]
            if finals.size == 0:
                notes.append(f"{group.label}, {x_key} = {tick}: no {y} values; left out")
                continue
            positions.append(position)
            ticks.append(tick)
            means.append(float(finals.mean()))
            spread = float(finals.std(ddof=1)) if finals.size > 1 else 0.0
            errors.append(spread / np.sqrt(finals.size))
            counts.append(finals.size)
            if theory:
                predicted.append(_theory_at_end(point.runs, y))
        if not positions:
            continue
        order = np.argsort(positions, kind="stable")
        expected = None
        if theory:
            if any(p is None for p in predicted):
                notes.append(f"{group.label}: no closed form for the final {y} of this problem")
            else:
                expected = np.array(predicted, dtype=np.float64)[order]
        line = FinalSeries(group.label, group.values, np.array(positions)[order],
                           [ticks[i] for i in order], np.array(means)[order],
                           np.array(errors)[order], np.array(counts)[order], expected)  # fmt: skip
        series.append(line)
    return series, notes


def _theory_at_end(runs: Sequence[Run], y: str) -> float | None:
    """The closed form at each run's last step, averaged over pooled replicates."""
    values = []
    for run in runs:
        if run.spec is None:
            return None
        curve = theory_curve(run.spec, y, np.array([run.spec.sgd.steps]))
        if curve is None:
            return None
        values.append(float(curve[0]))
    return float(np.mean(values))
