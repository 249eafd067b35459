"""What a worker sends its coordinator, one typed message per kind (never unpacked by position)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.engine.loop import Outcome


@dataclass(frozen=True)
class Row:
    """A trace row (rank 0, at a recording meeting)."""

    row: dict[str, Any]


@dataclass(frozen=True)
class Checkpoint:
    """Every model after a checkpoint meeting (rank 0)."""

    trial: int
    step: int
    wall_s: float
    W: np.ndarray


@dataclass(frozen=True)
class Done:
    """The worker finished every trial (or stopped at a meeting with every other rank)."""

    outcome: Outcome
    timings: dict[str, float]


@dataclass(frozen=True)
class Stopped:
    """The worker left a meeting without finishing it: why (a peer died, the coordinator is
    gone, or a stop request was not answered by every peer)."""

    reason: str


@dataclass(frozen=True)
class Failed:
    """The worker raised; the run fails with its message and traceback."""

    error: str
    traceback: str


Message = Row | Checkpoint | Done | Stopped | Failed
