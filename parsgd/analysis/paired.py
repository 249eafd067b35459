"""Paired comparisons: each schedule's difference from a reference, trial by trial.

The random draws of a step are a pure function of (seed, trial, worker, step) and the data
(``parsgd.rng``), so two runs that differ only in their averaging schedule, step size or L2
see the same samples in trial t. The difference of a metric between them, trial by trial,
then cancels the sampling noise both share, and its confidence interval is far narrower than
the two marginal bands suggest. That holds only when the draws are shared: the same seed,
the same trial numbers, the same data, and the same number of draws per step (workers,
nodes, method, batch size, objective kind). ``--paired-with 'averaging.every=1'`` pairs
every other run with the reference run whose draw-determining keys (``DRAW_KEYS``) agree,
and refuses, naming the key, where there is none.

Intervals are 95% Student t: ``mean +- t(0.975, n-1) s / sqrt(n)`` over the n paired
differences; the unpaired interval (Welch) beside it shows what pairing buys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import yaml

from parsgd.analysis.runs import Run, config_value, flat_config
from parsgd.errors import ConfigError

# Keys that decide which samples a trial draws. Runs that agree on all of them (and differ
# in anything else: schedule, step size, l2, steps) share their draws trial by trial.
DRAW_KEYS = (
    "seed",
    "data",
    "workers",
    "nodes",
    "method",
    "sgd.batch_size",
    "sgd.sampling",
    "sgd.init",
    "sgd.init_scale",
    "objective.kind",
)


@dataclass(frozen=True)
class Reference:
    """``key = value``: the runs compared against."""

    key: str
    value: Any

    @property
    def text(self) -> str:
        return f"{self.key}={self.value}"

    def holds(self, run: Run) -> bool:
        try:
            return bool(config_value(run.config, self.key) == self.value)
        except KeyError:
            return False


def parse_reference(text: str) -> Reference:
    """``"averaging.every=1"`` -> Reference (the value read as YAML: 1, end, 0.05, ...)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise ConfigError(f"--paired-with must be KEY=VALUE (e.g. averaging.every=1); got {text!r}")
    return Reference(key.strip(), yaml.safe_load(value))


def split_runs(runs: Sequence[Run], reference: Reference) -> tuple[list[Run], list[Run]]:
    """(reference runs, the others); ConfigError when no run matches the reference."""
    chosen = [run for run in runs if reference.holds(run)]
    if not chosen:
        raise ConfigError(f"--paired-with {reference.text}: no run has {reference.text}")
    return chosen, [run for run in runs if not reference.holds(run)]


def _draws(run: Run) -> tuple[str, ...]:
    out = []
    for key in DRAW_KEYS:
        try:
            out.append(repr(config_value(run.config, key)))
        except KeyError:
            out.append("-")
    return tuple(out)


def partner(run: Run, references: Sequence[Run], reference: Reference) -> Run:
    """The reference run that shares ``run``'s draws; ConfigError naming the key otherwise."""
    sharing = [candidate for candidate in references if _draws(candidate) == _draws(run)]
    if sharing:
        # Of the runs that share the draws, the one most like this run: in a grid of step
        # sizes x schedules, the reference schedule at the same step size.
        mine = flat_config(run.config)

        def differences(candidate: Run) -> int:
            theirs = flat_config(candidate.config)
            return sum(mine.get(k) != theirs.get(k) for k in {*mine, *theirs})

        return min(sharing, key=differences)
    nearest = references[0]
    differing = [
        key for key, a, b in zip(DRAW_KEYS, _draws(run), _draws(nearest), strict=True) if a != b
    ]
    raise ConfigError(
        f"--paired-with {reference.text}: {run.directory.name} shares no random draws with a "
        f"reference run (it differs from {nearest.directory.name} in {', '.join(differing)}); "
        "pairing needs the same seed, trials and data"
    )


def paired_trials(run: Run, ref: Run) -> list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]:
    """Trials of ``run`` with the reference's trial of the same number."""
    mine = {int(t["trial"][0]): t for t in run.trials}
    theirs = {int(t["trial"][0]): t for t in ref.trials}
    return [(mine[k], theirs[k]) for k in sorted(mine) if k in theirs]


def final_differences(
    runs: Sequence[Run], references: Sequence[Run], reference: Reference, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(paired differences, the runs' finals, the references' finals) of ``column``."""
    differences, values, base = [], [], []
    for run in runs:
        for trial, ref_trial in paired_trials(run, partner(run, references, reference)):
            values.append(trial[column][-1])
            base.append(ref_trial[column][-1])
            differences.append(values[-1] - base[-1])
    return np.array(differences), np.array(values), np.array(base)


def ci95(values: np.ndarray) -> float | None:
    """Half-width of the 95% t interval of the mean of ``values`` (None below 2 values)."""
    from scipy.stats import t

    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    return float(t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))


def welch_ci95(a: np.ndarray, b: np.ndarray) -> float | None:
    """Half-width of the 95% Welch interval of mean(a) - mean(b), as if a and b were apart."""
    from scipy.stats import t

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return None
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0.0:
        return 0.0
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float(t.ppf(0.975, dof) * np.sqrt(va + vb))
