"""Run a sweep's points on this machine, as many at once as the cores allow, resumably.

    sweep process: imports parsgd and compiles the kernels once, then for each point to do
        fork a run process -> run_experiment(point, <out>/<sweep>, resume) -> exit status
    and, as each run process ends, rebuilds index.csv from the run directories.

Forking from the warm sweep process is what keeps many tiny runs cheap: no interpreter
start-up, no imports, no JIT compile per run (a fork costs milliseconds).

Stopping: a run process ignores SIGINT/SIGTERM and sits in its own process group, so a
terminal's Ctrl-C, ``kill`` or SLURM's SIGTERM reaches the sweep process, which stops
starting runs and sends each run process one SIGUSR1; the run stops at its next averaging
point, checkpoints and ends ``interrupted``. A second signal forwards a second SIGUSR1 (stop
now). If the sweep process is killed outright, PR_SET_PDEATHSIG sends the SIGUSR1 instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from parsgd.config.load import usable_cpus
from parsgd.config.spec import RunSpec
from parsgd.engine.progress import bar
from parsgd.engine.signals import STOP_SIGNALS
from parsgd.errors import ParsgdError
from parsgd.sweep.spec import Point
from parsgd.sweep.state import (
    FINISHED,
    RunClaim,
    RunState,
    run_state,
    sweep_states,
    update_index,
)

_POLL_S = 0.5
# Rebuilding index.csv reads every run.json of the sweep: at most this often while running
# (and always at the end), so that a sweep of many tiny runs does not spend O(N^2) on it.
_INDEX_EVERY_S = 1.0


@dataclass
class SweepOutcome:
    """How a sweep invocation went; ``states`` are every point's, after it."""

    states: list[RunState]
    ran: int = 0
    skipped: int = 0
    busy: int = 0
    stopped_by: str | None = None
    overhead_s: list[float] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.states:
            counts[state.status] = counts.get(state.status, 0) + 1
        return counts

    @property
    def exit_status(self) -> int:
        """130 if stopped by a signal; 1 if a point failed or is unfinished; else 0."""
        if self.stopped_by is not None:
            return 130
        unfinished = [s for s in self.states if s.status not in (*FINISHED, "running")]
        return 1 if unfinished else 0


class RunsProgress:
    """Runs done / total: a redrawn bar on a terminal, one line per finished run otherwise."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label = max(1, total), label
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty()
        self.done = 0

    def finished(self, state: RunState, running: int, wall_s: float) -> None:
        self.done += 1
        if self.tty:
            self.stream.write(
                f"\r{self.label} {bar(self.done / self.total)} {self.done}/{self.total} runs, "
                f"{running} running "
            )
        else:
            self.stream.write(
                f"[{self.done}/{self.total}] {state.status} {state.point.run_id} ({wall_s:.1f} s)\n"
            )
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _warm_up_kernels(spec: RunSpec) -> None:
    """Compile the kernels here, once, so that every forked run inherits them compiled."""
    from parsgd.data.shared import LocalArena
    from parsgd.engine.warmup import warm_up_problem
    from parsgd.problems.registry import build_problem

    small = spec.with_samples_at_most(64)
    # On failure each run process compiles (or reports the problem) itself.
    with contextlib.suppress(ParsgdError, ValueError, MemoryError):
        warm_up_problem(build_problem(small, LocalArena()))


def _run_process_main(
    spec: RunSpec, sweep_dir: Path, resume: bool, parent: int, other_claims: list[int]
) -> None:
    """Entry point of a forked run process (exit status: RunResult.exit_status)."""
    # First, before the inherited handler of the sweep process can run here.
    signal.signal(signal.SIGUSR1, _stop_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.setpgrp()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGUSR1)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(130)
    for fd in other_claims:  # or this process would hold other points' claims until it ends
        os.close(fd)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- no per-run progress bars
    from parsgd.engine.runner import run_experiment

    try:
        result = run_experiment(spec, sweep_dir, resume=resume, force=not resume)
    except ParsgdError as exc:
        print(f"parsgd: error: {spec.name}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_status)
    sys.exit(result.exit_status)


def _stop_now(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("stop requested before the run started")


class LocalSweep:
    """Runs points in forked run processes, at most ``jobs`` at once (default: by cores)."""

    def __init__(
        self,
        sweep_dir: Path,
        keys: list[str],
        points: list[Point],
        jobs: int | None = None,
        force: bool = False,
        label: str = "sweep",
    ) -> None:
        self.sweep_dir, self.keys, self.points = sweep_dir, keys, points
        self.jobs, self.force, self.label = jobs, force, label
        self.cores = usable_cpus()
        self._running: dict[int, tuple[Any, Point, float, RunClaim]] = {}
        self._stop: str | None = None

    def _todo(self, states: list[RunState], outcome: SweepOutcome) -> list[Point]:
        todo = []
        for state in states:
            if state.status == "running":
                outcome.busy += 1  # another sweep or array task is on it
            elif state.status in FINISHED and not self.force:
                outcome.skipped += 1
            else:
                todo.append(state.point)
        return todo

    def _fits(self, point: Point) -> bool:
        if not self._running:
            return True
        if self.jobs is not None:
            return len(self._running) < self.jobs
        used = sum(entry[1].spec.workers for entry in self._running.values())
        return used + point.spec.workers <= self.cores

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop is None:
            self._stop = signal.Signals(signum).name
        for proc, *_ in self._running.values():
            if proc.pid is not None:
                os.kill(proc.pid, signal.SIGUSR1)

    def _start(self, context: Any, point: Point, outcome: SweepOutcome) -> None:
        """Claim the point, check it is still to do, and fork its run process."""
        claim = RunClaim(self.sweep_dir / point.run_id)
        if not claim.acquire():
            outcome.busy += 1
            return
        if not self.force and run_state(self.sweep_dir, point).status in FINISHED:
            claim.release()  # another sweep finished it since we looked
            outcome.skipped += 1
            return
        proc = context.Process(
            target=_run_process_main,
            args=(point.spec, self.sweep_dir, not self.force, os.getpid(), self._claim_fds()),
            name=f"run-{point.run_id}",
        )
        proc.start()
        self._running[proc.sentinel] = (proc, point, time.perf_counter(), claim)
        outcome.ran += 1

    def _claim_fds(self) -> list[int]:
        return [entry[3].fileno() for entry in self._running.values()]

    def run(self, index_points: list[Point] | None = None) -> SweepOutcome:
        """Run what is not done; ``index_points``: the points index.csv lists (all planned)."""
        listed = index_points if index_points is not None else self.points
        outcome = SweepOutcome(states=[])
        todo = self._todo(sweep_states(self.sweep_dir, self.points), outcome)
        update_index(self.sweep_dir, self.keys, listed)
        indexed = time.monotonic()
        progress = RunsProgress(len(todo), self.label)
        if todo:
            _warm_up_kernels(todo[0].spec)
            # Shared memory registers with a resource tracker process; started here, every
            # run process inherits it instead of spawning its own (a fresh interpreter each).
            resource_tracker.ensure_running()
        context = multiprocessing.get_context("fork")
        previous = {sig: signal.signal(sig, self._signal) for sig in STOP_SIGNALS}
        try:
            while (todo and self._stop is None) or self._running:
                while todo and self._stop is None and self._fits(todo[0]):
                    self._start(context, todo.pop(0), outcome)
                for sentinel in wait(list(self._running), timeout=_POLL_S):
                    assert isinstance(sentinel, int)
                    proc, point, started, claim = self._running.pop(sentinel)
                    proc.join()
                    claim.release()
                    wall_s = time.perf_counter() - started
                    state = run_state(self.sweep_dir, point)
                    total_s = (state.record.get("timings") or {}).get("total_s")
                    if state.status in FINISHED and total_s is not None:
                        outcome.overhead_s.append(wall_s - total_s)
                    if time.monotonic() - indexed >= _INDEX_EVERY_S:
                        update_index(self.sweep_dir, self.keys, listed)
                        indexed = time.monotonic()
                    progress.finished(state, len(self._running), wall_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for proc, *_, claim in self._running.values():  # only after an exception here
                proc.kill()
                proc.join()
                claim.release()
            progress.close()
        outcome.stopped_by = self._stop
        update_index(self.sweep_dir, self.keys, listed)
        outcome.states = sweep_states(self.sweep_dir, self.points)
        return outcome
