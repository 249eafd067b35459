"""The collector: where rank 0's trace rows and checkpoints land in the run directory.

Every backend delivers to it (the serial loop directly, the coordinator from its workers'
messages); it appends rows to trace.csv, writes checkpoints, keeps each trial's last row for
run.json and moves the progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import math
from typing import Any

import numpy as np

from parsgd.config.spec import RunSpec
from parsgd.engine.control import STOP_REQUEST
from parsgd.engine.coordinator import Sink
from parsgd.engine.plan import Plan
from parsgd.engine.progress import ProgressBar
from parsgd.engine.rundir import TRACE_COLUMNS, RunDirectory, TraceWriter, read_trace
from parsgd.engine.signals import StopSignals

log = logging.getLogger("parsgd")


class Collector(Sink):
    """Receives rank 0's rows and checkpoints; keeps the last row of every trial."""

    def __init__(self, run_dir: RunDirectory, trace: TraceWriter, plan: Plan, spec: RunSpec):
        self.run_dir, self.trace, self.plan = run_dir, trace, plan
        self.config_hash = spec.config_hash
        # The last row of every trial, for run.json's final figures; a resumed run starts
        # from the rows it kept.
        self.last_rows: dict[int, dict[str, Any]] = (
            {int(row["trial"]): parse_row(row) for row in read_trace(run_dir.trace_path)}
            if trace.rows
            else {}
        )
        self.pids: list[int] = []
        self.progress = ProgressBar(spec.trials * plan.total_steps, spec.name)
        self.on_started: Any = None
        self.signals: StopSignals | None = None
        self.control: np.ndarray | None = None  # the team's, to stop a diverged run
        # (trial, step, column) of the first non-finite trace value, if any.
        self.nonfinite: tuple[int, int, str] | None = None

    def _critical(self) -> contextlib.AbstractContextManager[None]:
        return self.signals.critical() if self.signals is not None else contextlib.nullcontext()

    def started(self, pids: list[int]) -> None:
        self.pids = pids
        if self.on_started is not None:
            self.on_started(pids)

    def row(self, row: dict[str, Any]) -> None:
        with self._critical():
            self.trace.append(row)
        self.last_rows[row["trial"]] = row
        self.progress.update(row["trial"] * self.plan.total_steps + row["step"])
        if self.nonfinite is None:
            self._watch_divergence(row)

    def _watch_divergence(self, row: dict[str, Any]) -> None:
        """The model can stay finite while the loss or the spread overflows: check the row.

        A non-finite value asks the team to stop at its next meeting; the runner then ends
        the run ``diverged``.
        """
        for column in TRACE_COLUMNS:
            value = row.get(column)
            if isinstance(value, float) and not math.isfinite(value):
                self.nonfinite = (int(row["trial"]), int(row["step"]), column)
                if self.control is not None:
                    self.control[STOP_REQUEST] = 1
                return

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        meta = {
            "trial": trial,
            "step": step,
            "wall_s": wall_s,
            "trace_rows": self.trace.rows,
            "config_hash": self.config_hash,
        }
        with self._critical():
            self.run_dir.write_checkpoint(W, meta)
        log.info("checkpoint at trial %d step %d", trial, step)


def parse_row(row: dict[str, str]) -> dict[str, Any]:
    """A trace.csv row read back: integers, floats, and None for empty cells."""
    parsed: dict[str, Any] = {}
    for key, text in row.items():
        if key in ("trial", "step", "samples", "syncs"):
            parsed[key] = int(text)
        else:
            parsed[key] = float(text) if text else None
    return parsed
