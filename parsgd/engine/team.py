"""The algorithm, written once as phases over ranks; the backends only decide how ranks interleave.

A meeting at step t runs, for every rank r:

    arrive                         (barrier)
    phase_average(r)               avg[chunk r] = mean over workers of W[:, chunk r]
    arrive                         (barrier)
    decision()                     every rank reads the same flags -> stop / diverged / go on
    phase_settle(r)                stats[r] from W[r] and avg; then W[r] = avg if averaging
    arrive (recording meetings)    (barrier) then rank 0 reduces stats into a trace row

Each phase writes only its own rank's slots and reads others' only after a barrier, so the
result does not depend on scheduling: the serial backend runs each phase for r = 0..M-1 in
turn and gets the same bits as M processes running them at once. The average of a column is
summed over rows 0..M-1 in that order whatever chunk it falls in.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.data.synthetic import Arena
from parsgd.engine import fastpath
from parsgd.engine.fastpath import FastRounds, average_chunk
from parsgd.engine.plan import Meeting, Plan
from parsgd.problems.base import Problem
from parsgd.problems.linear import LinearPool
from parsgd.rng import INIT_STREAM, StepStream, generator
from parsgd.schedules import StepSize

# Optional trace columns a problem may fill through Problem.extra_metrics.
EXTRA_COLUMNS = ("test_loss", "test_accuracy", "alignment")

# Columns of the per-rank statistics block.
WORKER_LOSS, AVG_LOSS_PARTIAL, SPREAD, COMPUTE_S, SYNC_S, EVAL_S = range(6)
N_STATS = 6

# Slots of the control block.
STOP_REQUEST, ABORT = range(2)
N_CONTROL = 4

# Bits of a rank's flags word, OR-ed into the decision of a meeting.
NONFINITE, STOP = 1, 2

# Set (to anything) to keep every meeting in Python: for debugging and before/after timings.
NO_FASTPATH_ENV = "PARSGD_NO_FASTPATH"

# Steps per compiled-kernel call: bounds the uniforms array a worker holds at once.
_MAX_UNIFORMS_PER_CALL = 1 << 20


class TeamState:
    """The arrays all workers share: models, their average, statistics, barrier and control."""

    def __init__(self, arena: Arena, workers: int, d: int, models: int | None = None) -> None:
        self.W = arena.zeros((workers if models is None else models, d))
        self.avg = arena.zeros((d,))
        self.stats = arena.zeros((workers, N_STATS))
        self.flags = arena.zeros((workers,), np.int64)
        self.arrive = arena.zeros((workers,), np.int64)
        self.position = arena.zeros((workers,), np.int64)  # last meeting step of each rank
        self.control = arena.zeros((N_CONTROL,), np.int64)


@dataclass
class Settings:
    """What a rank needs from the config, read once."""

    workers: int
    trials: int
    seed: int
    batch_size: int
    init: str
    init_scale: float
    step_size: StepSize
    shared_model: bool = False  # Hogwild!: every rank updates row 0, without locks


class Team:
    """All of one run's algorithm except how ranks are scheduled."""

    def __init__(self, problem: Problem, plan: Plan, state: TeamState, settings: Settings):
        self.problem = problem
        self.plan = plan
        self.state = state
        self.settings = settings
        M, d = settings.workers, problem.d
        self.chunks = [(r * d // M, (r + 1) * d // M) for r in range(M)]
        self.rows = [0 if settings.shared_model else r for r in range(M)]
        self._streams: dict[tuple[int, int], StepStream] = {}
        # Per rank and private to the process that runs it: this trial's, and earlier trials'.
        self.timers = np.zeros((M, N_STATS))
        self.totals = np.zeros((M, N_STATS))
        plain = plan.average & ~plan.record & ~plan.checkpoint
        if _dense_linear(problem) and plain.any():
            fastpath.warm_up()  # here, before the workers fork, not inside a trial's clock

    # -- local work -------------------------------------------------------------------------

    def init_model(self, trial: int, rank: int) -> None:
        s, w = self.settings, self.state.W[self.rows[rank]]
        self.totals[rank] += self.timers[rank]
        self.timers[rank] = 0.0
        if s.shared_model and rank != 0:
            return  # rank 0 initialises the one model before the first meeting
        if s.init == "zeros":
            w[:] = 0.0
        else:
            key = (trial,) if s.init == "shared" else (trial, rank)
            normals = generator(s.seed, INIT_STREAM, *key).standard_normal(w.size)
            w[:] = (s.init_scale * self.problem.init_std) * normals

    def compute(self, trial: int, rank: int, start: int, stop: int) -> None:
        """Run this rank's local steps start..stop-1 (0-based step indices)."""
        if stop <= start:
            return
        tic = time.perf_counter()
        stream = self.stream(trial, rank)
        per_call = max(1, _MAX_UNIFORMS_PER_CALL // stream.per_step)
        w = self.state.W[self.rows[rank]]
        for lo in range(start, stop, per_call):
            hi = min(stop, lo + per_call)
            self.problem.sgd(w, stream.uniforms(lo, hi), self.settings.step_size.values(lo, hi))
        self.timers[rank, COMPUTE_S] += time.perf_counter() - tic

    def stream(self, trial: int, rank: int) -> StepStream:
        """This rank's random stream for this trial (kept for the trial, then dropped)."""
        key = (trial, rank)
        stream = self._streams.get(key)
        if stream is None:
            if any(k[0] != trial for k in self._streams):
                self._streams.clear()  # one trial at a time: drop the previous trial's streams
            stream = self._streams[key] = StepStream(
                self.settings.seed, trial, rank, self.problem.uniforms_per_step
            )
        return stream

    def fast_rounds(self, ranks: list[int], sync: Any, hooks: Hooks) -> FastRounds | None:
        """The compiled path for plain meetings, where it applies (see ``fastpath``)."""
        M = self.settings.workers
        serial = len(ranks) == M
        barrier = len(ranks) == 1 and hasattr(sync, "generation") and hasattr(sync, "parent")
        if os.environ.get(NO_FASTPATH_ENV) or hooks.per_meeting:
            return None
        if not _dense_linear(self.problem):
            return None
        if not (serial or barrier) or not self.state.arrive.flags.c_contiguous:
            return None
        return FastRounds(self, ranks, sync, _MAX_UNIFORMS_PER_CALL)

    # -- meeting phases ---------------------------------------------------------------------

    def phase_average(self, rank: int) -> None:
        """Average this rank's column chunk into ``avg``; flag non-finite values and stops."""
        st = self.state
        lo, hi = self.chunks[rank]
        flags = 0 if average_chunk(st.W, st.avg, lo, hi) else NONFINITE
        if rank == 0 and st.control[STOP_REQUEST]:
            flags |= STOP
        st.flags[rank] = flags

    def decision(self) -> int:
        """The OR of every rank's flags: the same value on every rank after the barrier."""
        return int(np.bitwise_or.reduce(self.state.flags))

    def phase_settle(self, rank: int, meeting: Meeting) -> None:
        """Record this rank's statistics (if recording), then adopt the average (if averaging)."""
        st = self.state
        w = st.W[self.rows[rank]]
        if meeting.record:
            tic = time.perf_counter()
            stats = st.stats[rank]
            # One shared model has no per-worker losses to compare with the average.
            shared = self.settings.shared_model
            stats[WORKER_LOSS] = math.nan if shared else self.problem.loss(w)
            stats[AVG_LOSS_PARTIAL] = self.problem.loss_partial(st.avg, rank, self.settings.workers)
            diff = w - st.avg
            stats[SPREAD] = float(diff @ diff)
            self.timers[rank, EVAL_S] += time.perf_counter() - tic
            stats[COMPUTE_S] = self.timers[rank, COMPUTE_S]
            stats[SYNC_S] = self.timers[rank, SYNC_S]
            stats[EVAL_S] = self.timers[rank, EVAL_S]
        if meeting.average and not self.settings.shared_model:
            w[:] = st.avg
        st.position[rank] = meeting.step

    def trace_row(self, trial: int, meeting: Meeting, wall_s: float) -> dict[str, Any]:
        """Reduce every rank's statistics (rank 0, after the recording barrier)."""
        st, problem, M = self.state, self.problem, self.settings.workers
        loss = problem.finish_loss(math.fsum(st.stats[:, AVG_LOSS_PARTIAL].tolist()), st.avg)
        workers_mean = math.fsum(st.stats[:, WORKER_LOSS].tolist()) / M
        row: dict[str, Any] = {
            "trial": trial,
            "step": meeting.step,
            "samples": meeting.step * M * self.settings.batch_size,
            "syncs": meeting.syncs,
            "wall_s": wall_s,
            "loss": loss,
            "loss_workers_mean": workers_mean,
            "variance": math.fsum(st.stats[:, SPREAD].tolist()) / M,
            "gap": workers_mean - loss,
            "dist_opt_sq": None,
            "subopt": None,
            "compute_s": float(np.mean(st.stats[:, COMPUTE_S])),
            "sync_wait_s": float(np.mean(st.stats[:, SYNC_S])),
        }
        if self.settings.shared_model:
            # Hogwild! has one model: no spread between workers and no averaging gap.
            row["loss_workers_mean"] = row["variance"] = row["gap"] = None
        if problem.w_opt is not None:
            diff = st.avg - problem.w_opt
            row["dist_opt_sq"] = float(diff @ diff)
        if problem.f_opt is not None:
            row["subopt"] = loss - problem.f_opt
        for column in EXTRA_COLUMNS:
            row[column] = None
        row.update(problem.extra_metrics(st.avg))
        return row

    def timings(self, rank: int) -> dict[str, float]:
        """Seconds this rank spent computing, at meetings and evaluating, over all trials."""
        spent = self.totals[rank] + self.timers[rank]
        return {
            "compute_s": float(spent[COMPUTE_S]),
            "sync_s": float(spent[SYNC_S]),
            "eval_s": float(spent[EVAL_S]),
        }


def _dense_linear(problem: Problem) -> bool:
    """The compiled fast path runs the dense linear-model loop (least squares, logistic, hinge)."""
    return isinstance(problem, LinearPool) and isinstance(problem.X, np.ndarray)


def column_mean(W: np.ndarray, out: np.ndarray, lo: int, hi: int) -> None:
    """``out[lo:hi] = mean over rows of W[:, lo:hi]``, adding rows 0..M-1 in order."""
    acc = out[lo:hi]
    np.copyto(acc, W[0, lo:hi])
    for r in range(1, W.shape[0]):
        acc += W[r, lo:hi]
    acc /= W.shape[0]


@dataclass(frozen=True)
class Position:
    """Where a run (re)starts: trial, last completed meeting step (-1: fresh) and its wall time."""

    trial: int = 0
    step: int = -1
    wall_s: float = 0.0


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | interrupted | diverged
    trial: int
    step: int
    syncs: int
    wall_s: float = 0.0


class Hooks:
    """What a driver does with the results of rank 0; the default drops them.

    ``per_meeting``: ``meeting()`` must see every meeting, so the compiled path (which runs
    many plain meetings in one call) is off.
    """

    per_meeting = False

    def row(self, row: dict[str, Any]) -> None:
        pass

    def checkpoint(self, trial: int, meeting: Meeting, wall_s: float) -> None:
        pass

    def trial_done(self, trial: int) -> None:
        pass

    def meeting(self, trial: int, step: int) -> None:
        pass


def _meeting_at(plan: Plan, index: int) -> Meeting:
    return Meeting(
        int(plan.steps[index]),
        bool(plan.average[index]),
        bool(plan.record[index]),
        bool(plan.checkpoint[index]),
        int(plan.syncs[index]),
    )


def run_ranks(
    team: Team,
    ranks: list[int],
    sync: Any,
    start: Position,
    hooks: Hooks,
) -> Outcome:
    """Run every trial for the given ranks: all M in one process (serial), or one rank.

    ``sync()`` is the barrier between phases: a no-op when ``ranks`` holds every rank, since
    each phase then finishes for all ranks before the next begins.
    """
    plan, settings, timers = team.plan, team.settings, team.timers
    leader = 0 in ranks
    for trial in range(start.trial, settings.trials):
        resumed = trial == start.trial and start.step >= 0
        if not resumed:
            for r in ranks:
                team.init_model(trial, r)
        first = start.step if resumed else -1
        origin = time.perf_counter() - (start.wall_s if resumed else 0.0)
        paused = 0.0
        done = max(first, 0)
        fast = team.fast_rounds(ranks, sync, hooks)
        index = int(np.searchsorted(plan.steps, first, side="right"))
        while index < len(plan.steps):
            if fast is not None and fast.starts_at(index, done):
                count, decision, compute_s, sync_s = fast.run(trial, index, done)
                timers[ranks, COMPUTE_S] += compute_s
                timers[ranks, SYNC_S] += sync_s
                index += count
                meeting = _meeting_at(plan, index - 1)
                done = meeting.step
                if decision & (NONFINITE | STOP):
                    status = "diverged" if decision & NONFINITE else "interrupted"
                    wall_s = time.perf_counter() - origin - paused
                    return Outcome(status, trial, meeting.step, meeting.syncs, wall_s)
                continue
            meeting = _meeting_at(plan, index)
            index += 1
            hooks.meeting(trial, meeting.step)
            for r in ranks:
                team.compute(trial, r, done, meeting.step)
            done = meeting.step
            tic = time.perf_counter()
            sync()
            if meeting.step == 0:
                # The trial's clock starts once every worker stands at step 0, so the first
                # trial's wall_s and sync time do not include the other workers' start-up.
                origin = tic = time.perf_counter()
            for r in ranks:
                team.phase_average(r)
            sync()
            decision = team.decision()
            timers[ranks, SYNC_S] += time.perf_counter() - tic
            for r in ranks:
                team.phase_settle(r, meeting)
            if meeting.record:
                tic = time.perf_counter()
                sync()
                if leader:
                    hooks.row(team.trace_row(trial, meeting, tic - origin - paused))
                paused += time.perf_counter() - tic
            if leader and meeting.checkpoint:
                hooks.checkpoint(trial, meeting, time.perf_counter() - origin - paused)
            if decision & (NONFINITE | STOP):
                status = "diverged" if decision & NONFINITE else "interrupted"
                wall_s = time.perf_counter() - origin - paused
                return Outcome(status, trial, meeting.step, meeting.syncs, wall_s)
        hooks.trial_done(trial)
    return Outcome("completed", settings.trials - 1, plan.total_steps, plan.sync_count)
