"""Targets for ``--target``: a metric, a direction and a value, and the time to reach them.

The grammar, shared by ``parsgd report`` and ``parsgd plot --kind time-to-target|wallclock``:

- ``test_accuracy>=0.95``, ``loss<=0.1``: explicit metric and direction;
- ``0.1``: a bare value for the default metric (``--y``, else ``loss``), the direction
  inferred: higher is better for accuracy and alignment, lower for everything else.

A trial reaches the target at its first recorded row that meets it; a trial that never does
is None, never the time of its first row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from parsgd.errors import ConfigError

# Trace columns where a larger value is the better model.
HIGHER_IS_BETTER = frozenset({"test_accuracy", "alignment"})
_GRAMMAR = re.compile(r"^\s*(?:([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=))?\s*([^<>=\s]+)\s*$")


@dataclass(frozen=True)
class Target:
    """``column op value``: the first row where ``column >= value`` (or ``<=``) reaches it."""

    column: str
    op: str  # ">=" or "<="
    value: float

    @property
    def text(self) -> str:
        """``test_accuracy >= 0.95``: for headings, axis labels and legends."""
        return f"{self.column} {self.op} {self.value:g}"

    def met(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``values`` meet the target (NaN never does)."""
        with np.errstate(invalid="ignore"):
            return values >= self.value if self.op == ">=" else values <= self.value


def default_op(column: str) -> str:
    """The direction of improvement of a trace column: ">=" where higher is better."""
    return ">=" if column in HIGHER_IS_BETTER else "<="


def parse_target(text: str | float, default_column: str = "loss") -> Target:
    """``"test_accuracy>=0.95"`` -> Target; a bare number takes ``default_column``."""
    if isinstance(text, (int, float)):
        return Target(default_column, default_op(default_column), float(text))
    match = _GRAMMAR.match(text)
    value = None
    if match:
        try:
            value = float(match.group(3))
        except ValueError:
            value = None
    if match is None or value is None or not np.isfinite(value):
        raise ConfigError(
            "--target must be METRIC>=VALUE, METRIC<=VALUE or a number "
            f"(e.g. test_accuracy>=0.95, loss<=0.1, 0.1); got {text!r}"
        )
    column = match.group(1) or default_column
    return Target(column, match.group(2) or default_op(column), value)


def time_to_target(trial: dict[str, np.ndarray], target: Target) -> float | None:
    """Wall seconds at the first recorded row that meets ``target``; None if none does."""
    reached = np.flatnonzero(target.met(trial[target.column]))
    return float(trial["wall_s"][reached[0]]) if reached.size else None


def first_step_reaching(trial: dict[str, np.ndarray], target: Target) -> int | None:
    """The per-worker step of the first row that meets ``target``; None if none does."""
    reached = np.flatnonzero(target.met(trial[target.column]))
    return int(trial["step"][reached[0]]) if reached.size else None
