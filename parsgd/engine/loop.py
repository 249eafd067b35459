"""``run_ranks``: every trial of a run for the ranks of one process, block by block.

The serial backend calls it with every rank and no barrier (each phase of a meeting runs for
ranks 0..M-1 in turn); a worker of the processes backend with its one rank behind the
barrier. Both run the same compiled blocks (``meetings.run_block``) on the same inputs, so
they give the same bits. A block is a run of meetings whose steps fit in one draw of
uniforms, ending at a recording or checkpoint meeting, where Python takes the statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.engine import meetings
from parsgd.engine.barrier import PAD, wait
from parsgd.engine.control import ABORTED, GLOBAL, NONFINITE, OK, PARENT_GONE, STALLED, STOP
from parsgd.engine.plan import Cursor, Window
from parsgd.engine.team import COMPUTE_S, EVAL_S, SYNC_S, Team
from parsgd.errors import ParsgdError
from parsgd.problems.steps import advance

# Uniforms one rank draws at once: bounds the inputs a block holds.
MAX_UNIFORMS = 1 << 20


class Aborted(ParsgdError):
    """The coordinator asked every worker to stop now (a peer died)."""


class ParentGone(ParsgdError):
    """The coordinator died."""


class Stalled(ParsgdError):
    """A stop was requested and a peer never reached the meeting."""


_FAILURES: dict[int, type[ParsgdError]] = {
    ABORTED: Aborted,
    PARENT_GONE: ParentGone,
    STALLED: Stalled,
}


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
    """What a driver does with the results of rank 0; the default drops them."""

    def row(self, row: dict[str, Any]) -> None:
        pass

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        pass

    def trial_done(self, trial: int) -> None:
        pass

    def fault(self) -> None:
        """Called where the test hook's fault is due (before that meeting's local steps)."""


class _Ranks:
    """The compiled blocks' arguments for a set of ranks, and what carries between blocks."""

    def __init__(self, team: Team, ranks: list[int], barrier: bool, parent: int) -> None:
        self.team, self.barrier, self.parent = team, barrier, parent
        self.ranks = np.array(ranks, dtype=np.int64)
        plan, d = team.plan, team.state.W.shape[2]  # a row: the model, then any buffer
        self.scratch = np.zeros((len(ranks), d))
        self.tmp = np.zeros(min(d, 512))
        self.state = np.zeros(2, dtype=np.int64)
        self.state[0] = int(team.state.arrive[ranks[0] * PAD]) if barrier else 0
        self.pending = np.zeros(len(ranks), dtype=np.int64)
        self.cycles = np.zeros(2)
        self.cursor = Cursor(plan)
        self.max_steps = max(1, MAX_UNIFORMS // team.problem.uniforms_per_step)

    def inputs(self, trial: int, start: int, stop: int) -> np.ndarray:
        prepare = self.team.kernel.prepare
        draws = [prepare(self.team.stream(trial, int(r)).uniforms(start, stop)) for r in self.ranks]
        return np.stack(draws)

    def local(self, trial: int, index: int, start: int, stop: int) -> None:
        """Local steps start..stop-1 outside a block (an interval longer than one draw)."""
        team, kernel, s = self.team, self.team.kernel, self.team.settings
        st = team.state
        etas = team.settings.step_size.values(start, stop)
        inputs = self.inputs(trial, start, stop)
        tic = time.perf_counter()
        for k, r in enumerate(self.ranks):
            w = st.W[team.buffer_before(trial, index), team.rows[r]]
            advance(kernel.data, int(r), w, inputs[k], etas, s.momentum, s.nesterov)
        team.timers[self.ranks, COMPUTE_S] += time.perf_counter() - tic

    def block(self, trial: int, w: Window, index: int, end: int, start: int) -> tuple[int, int]:
        """Run meetings index..end-1 (of window ``w``) from step ``start``; (meetings done,
        decision)."""
        team, st, plan = self.team, self.team.state, self.team.plan
        lo, hi = index - w.first, end - w.first
        stop = int(w.steps[hi - 1])
        tic = time.perf_counter()
        inputs = self.inputs(trial, start, stop)
        etas = team.settings.step_size.values(start, stop)
        self.cycles[:] = 0.0
        drawn = time.perf_counter()
        status, count, decision = meetings.run_block(
            team.kernel.data, st.table, self.scratch, self.tmp, st.arrive, st.control,
            self.ranks, team.rows, team.group,
            team.row_group, inputs, etas, start, w.steps[lo:hi], w.level[lo:hi],
            w.average[lo:hi], trial * plan.meetings + index, self.barrier,
            self.parent, self.state, self.pending, self.cycles, team.settings.momentum,
            team.settings.nesterov, team.settings.momentum_mode,
        )  # fmt: skip
        toc = time.perf_counter()
        total = float(self.cycles.sum())
        share = self.cycles[0] / total if total > 0 else 1.0
        team.timers[self.ranks, COMPUTE_S] += (drawn - tic) + share * (toc - drawn)
        team.timers[self.ranks, SYNC_S] += (1.0 - share) * (toc - drawn)
        if status != OK:
            raise _FAILURES[status](f"meeting at step {int(w.steps[lo + count])}")
        return count, decision

    def recording_barrier(self) -> None:
        if not self.barrier:
            return
        team = self.team
        self.state[0] += 1
        M = team.settings.workers
        status = wait(
            team.state.arrive, team.state.control, int(self.ranks[0]), int(self.state[0]), 0, M,
            self.parent,
        )  # fmt: skip
        if status != OK:
            raise _FAILURES[status]("recording meeting")


def run_ranks(
    team: Team,
    ranks: list[int],
    start: Position,
    hooks: Hooks,
    barrier: bool = False,
    parent: int = 0,
    fault_step: int = -1,
) -> Outcome:
    """Run every trial for the given ranks: all M in one process (serial), or one rank.

    ``fault_step`` >= 0 (the test hook): ``hooks.fault()`` is called before the local steps
    of the first meeting at or after that step, on the same compiled path as any run.
    """
    plan, settings = team.plan, team.settings
    run = _Ranks(team, ranks, barrier, parent)
    leader = 0 in ranks
    n = plan.meetings
    fault_at = plan.index_of(fault_step) if fault_step >= 0 else n
    for trial in range(start.trial, settings.trials):
        resumed = trial == start.trial and start.step >= 0
        if not resumed:
            for r in ranks:
                team.init_model(trial, r)
        first = start.step if resumed else -1
        origin = time.perf_counter() - (start.wall_s if resumed else 0.0)
        paused = 0.0
        done = max(first, 0)
        index = plan.index_of(first, side="right")
        while index < n:
            if index == fault_at:
                hooks.fault()
            w = run.cursor.at(index)
            i = index - w.first
            while int(w.steps[i]) - done > run.max_steps:
                run.local(trial, index, done, done + run.max_steps)
                done += run.max_steps
            # Through the next Python meeting, within one draw of uniforms and the window.
            last = int(np.searchsorted(w.steps, done + run.max_steps, side="right"))
            end = w.first + min(int(w.block_end[i]), max(last, i + 1))
            if index < fault_at < end:
                end = fault_at
            count, decision = run.block(trial, w, index, end, done)
            if w.steps[i] == 0:
                # The trial's clock starts once every worker stands at step 0, so the first
                # trial's wall_s and sync time do not include the other workers' start-up.
                origin = time.perf_counter()
            index += count
            at = index - 1 - w.first
            done = int(w.steps[at])
            if w.python[at]:
                paused += python_meeting(team, run, trial, w, at, origin, paused, leader, hooks)
            if decision & (NONFINITE | STOP):
                status = "diverged" if decision & NONFINITE else "interrupted"
                wall_s = time.perf_counter() - origin - paused
                return Outcome(status, trial, done, int(w.syncs[at]), wall_s)
        hooks.trial_done(trial)
    return Outcome("completed", settings.trials - 1, plan.total_steps, plan.sync_count)


def python_meeting(
    team: Team, run: _Ranks, trial: int, w: Window, at: int, origin: float, paused: float,
    leader: bool, hooks: Hooks,
) -> float:  # fmt: skip
    """Statistics, the recording barrier, then rank 0's trace row and checkpoint at meeting
    ``at`` of window ``w``; returns the seconds spent (kept out of the trial's wall time)."""
    st = team.state
    tic = time.perf_counter()
    meeting = w.first + at
    cur, nxt = team.buffer_before(trial, meeting), team.buffer_before(trial, meeting + 1)
    # Where the meeting left the global average: the adopted row, or scratch.
    adopt = bool(w.average[at]) and int(w.level[at]) == GLOBAL
    for k, r in enumerate(run.ranks):
        model = st.W[cur, team.rows[r]]
        avg = st.W[nxt, team.rows[r]] if adopt else run.scratch[k]
        if w.record[at]:
            eval_tic = time.perf_counter()
            team.record_stats(int(r), model, avg)
            team.timers[r, EVAL_S] += time.perf_counter() - eval_tic
            st.stats[r, EVAL_S] = team.timers[r, EVAL_S]
    run.recording_barrier()
    if leader:
        k0 = int(np.flatnonzero(run.ranks == 0)[0])
        leader_meeting(
            team, run.scratch[k0], trial, w, at, tic - origin - paused, origin + paused, hooks
        )
    return time.perf_counter() - tic


def leader_meeting(
    team: Team, scratch: np.ndarray, trial: int, w: Window, at: int, wall_s: float,
    zero: float, hooks: Hooks,
) -> None:  # fmt: skip
    """Rank 0's part of recording meeting ``at`` of window ``w``, once every rank's
    statistics are in: the trace row (at trial time ``wall_s``) and the checkpoint (at the
    trial clock now, whose zero is ``zero``: statistics excluded). ``scratch`` is rank 0's
    scratch row, where a meeting that does not adopt leaves the global average."""
    st = team.state
    meeting = w.first + at
    cur, nxt = team.buffer_before(trial, meeting), team.buffer_before(trial, meeting + 1)
    adopt = bool(w.average[at]) and int(w.level[at]) == GLOBAL
    avg = st.W[nxt, team.rows[0]] if adopt else scratch
    step_at = int(w.steps[at])
    if w.record[at]:
        syncs = (int(w.syncs[at]), int(w.syncs_global[at]))
        hooks.row(team.trace_row(trial, step_at, syncs, wall_s, avg, st.W[cur]))
    if w.checkpoint[at]:
        models = team.adopted_after(st.W[cur], int(w.level[at]))
        hooks.checkpoint(trial, step_at, time.perf_counter() - zero, models)
