"""The numbers behind the figures: mean curves with bands, and times to a target.

Pure functions of loaded runs (``parsgd.analysis.runs``), no matplotlib, so tests can check what a
figure will show without reading pixels.

- Along ``step`` or ``samples`` every trial records at the same points, so the mean at a point
  is over the trials that recorded it.
- Along ``wall_s`` trials record at different times, so each trial is put on a common grid
  (even and geometric steps from 0 to the last trial's end):
  linear in between its rows, its first value before its first row, and its final value after
  its end (what that trial had to offer at that moment).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from parsgd.analysis.paired import Reference, ci95, paired_trials, partner, split_runs
from parsgd.analysis.runs import Group, Run, group_runs
from parsgd.analysis.targets import Target, time_to_target
from parsgd.analysis.theory_curves import theory_curve
from parsgd.errors import ConfigError

X_COLUMNS = ("step", "samples", "wall_s")
BANDS = ("stderr", "quantile")
_QUANTILES = (0.1, 0.9)
_WALL_GRID_POINTS = 200


@dataclass
class Curve:
    """One line of a figure: the mean over ``trials`` trials and a band around it.

    ``theory`` is the closed-form expectation at ``x`` (same length), or None.
    """

    label: str
    values: tuple[object, ...]
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    trials: int
    theory: np.ndarray | None = None


@dataclass
class TargetTimes:
    """Seconds each trial of a group took to first meet the target (None: never)."""

    label: str
    values: tuple[object, ...]
    seconds: list[float | None]

    @property
    def reached(self) -> list[float]:
        return [s for s in self.seconds if s is not None]

    @property
    def mean_s(self) -> float | None:
        return float(np.mean(self.reached)) if self.reached else None

    @property
    def median_s(self) -> float | None:
        return float(np.median(self.reached)) if self.reached else None

    @property
    def stderr_s(self) -> float:
        got = self.reached
        return float(np.std(got, ddof=1) / np.sqrt(len(got))) if len(got) > 1 else 0.0


def compute_curves(
    runs: Sequence[Run],
    *,
    x: str,
    y: str,
    by: Sequence[str],
    band: str = "stderr",
    theory: bool = False,
) -> tuple[list[Curve], list[str]]:
    """One curve per combination of ``by`` values; returns (curves, warnings)."""
    curves, notes = [], []
    for group in group_runs(runs, by):
        trials = [t for t in group.trials if np.isfinite(t[y]).any()]
        if not trials:
            notes.append(f"{group.label}: no {y} values recorded; left out")
            continue
        if x == "wall_s":
            grid, table = _on_wall_grid(trials, y)
        else:
            grid, table = _on_shared_points(trials, x, y)
        mean, low, high = _band(table, band)
        curve = Curve(group.label, group.values, grid, mean, low, high, len(trials))
        if theory:
            curve.theory, note = _theory_for(group, x, y, grid)
            if note:
                notes.append(note)
        curves.append(curve)
    return curves, notes


def _on_shared_points(
    trials: list[dict[str, np.ndarray]], x: str, y: str
) -> tuple[np.ndarray, np.ndarray]:
    grid = np.unique(np.concatenate([t[x] for t in trials]))
    table = np.full((len(trials), len(grid)), np.nan)
    for i, trial in enumerate(trials):
        table[i, np.searchsorted(grid, trial[x])] = trial[y]
    return grid, table


def _on_wall_grid(trials: list[dict[str, np.ndarray]], y: str) -> tuple[np.ndarray, np.ndarray]:
    end = max(float(np.nanmax(t["wall_s"])) for t in trials)
    # Even steps for a linear axis plus geometric ones, so early times (where a target is
    # often reached) stay resolved on a log axis.
    grid = np.union1d(
        np.linspace(0.0, end, _WALL_GRID_POINTS),
        np.geomspace(end * 1e-4, end, _WALL_GRID_POINTS) if end > 0 else [],
    )
    table = np.empty((len(trials), len(grid)))
    for i, trial in enumerate(trials):
        ok = np.isfinite(trial[y]) & np.isfinite(trial["wall_s"])
        t, v = trial["wall_s"][ok], trial[y][ok]
        table[i] = np.interp(grid, t, v, left=v[0], right=v[-1])
    return grid, table


def _band(table: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over trials (rows), and the band: mean +- standard error, or 10%-90% quantiles."""
    count = np.isfinite(table).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # points with no or a single value
        mean = np.nanmean(table, axis=0)
        if band == "quantile":
            low, high = np.nanquantile(table, _QUANTILES, axis=0)
            return mean, low, high
        spread = np.nanstd(table, axis=0, ddof=1)
    stderr = np.where(count > 1, spread / np.sqrt(np.maximum(count, 1)), 0.0)
    return mean, mean - stderr, mean + stderr


def _theory_for(
    group: Group, x: str, y: str, grid: np.ndarray
) -> tuple[np.ndarray | None, str | None]:
    """The closed form at the curve's points, or a note saying why there is none."""
    if x == "wall_s":
        return None, f"{group.label}: no theory curve against wall-clock time (only steps)"
    spec = group.runs[0].spec
    if spec is None:
        return None, f"{group.label}: no theory curve (its config.yaml no longer validates)"
    per_step = 1 if x == "step" else spec.workers * spec.sgd.batch_size
    curves = [theory_curve(run.spec, y, grid // per_step) for run in group.runs]
    if any(c is None for c in curves):
        return None, (
            f"{group.label}: no closed form for {y} of this problem (PAPER.md (i)-(iii) cover "
            "quadratics and least squares with data.stream: true, l2 = 0, constant step size)"
        )
    # Pooled runs share the setting; replicates differ only in seeds, so average them.
    return np.mean(np.array(curves), axis=0), None


def compute_target_times(
    runs: Sequence[Run], *, by: Sequence[str], target: Target
) -> list[TargetTimes]:
    """For every group, each trial's wall seconds to first meet ``target``."""
    return [
        TargetTimes(
            group.label, group.values, [time_to_target(trial, target) for trial in group.trials]
        )
        for group in group_runs(runs, by)
    ]


def compute_paired_curves(
    runs: Sequence[Run], *, x: str, y: str, by: Sequence[str], reference: Reference
) -> list[Curve]:
    """One curve per group of non-reference runs: the mean over trials of ``y`` minus the
    same trial's ``y`` in the reference run with the same draws, band its 95% t interval.

    Rows pair at the same step, so ``x`` must be ``step`` or ``samples``.
    """
    if x == "wall_s":
        raise ConfigError("--paired-with pairs rows at the same step: use --x step or samples")
    references, others = split_runs(runs, reference)
    curves = []
    for group in group_runs(others, by):
        differences = []
        for run in group.runs:
            for trial, base in paired_trials(run, partner(run, references, reference)):
                common, mine, theirs = np.intersect1d(trial[x], base[x], return_indices=True)
                differences.append({x: common, y: trial[y][mine] - base[y][theirs]})
        if not differences:
            continue
        grid, table = _on_shared_points(differences, x, y)
        mean = np.nanmean(table, axis=0)
        half = np.array([ci95(table[:, j]) or 0.0 for j in range(table.shape[1])])
        curve = Curve(group.label, group.values, grid, mean, mean - half, mean + half, len(table))
        curves.append(curve)
    return curves
