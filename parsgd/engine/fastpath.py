"""Compiled averaging rounds: many meetings in one numba call, for frequent averaging.

A meeting in Python (``run_ranks``) costs tens of microseconds of interpreter work: drawing
the uniforms, two barrier waits, numpy slicing, the decision. At ``averaging.every: 1`` and
d = 100 a step costs ~0.3 us, so Python bounds throughput to a few percent of one-shot
averaging. ``rounds`` runs a block of consecutive *plain* meetings (averaging only: no trace
row, no checkpoint) in one call: local steps with the same ``sgd_dense`` kernel, a barrier on
the shared ``arrive`` counters, the column-chunk average, a barrier, the decision, adoption.
Uniforms for the whole block are drawn up front; draws are positional (``StepStream``), so a
block gets exactly the numbers the per-meeting path would. Recording and checkpoint meetings
stay in Python.

It keeps ``run_ranks``'s invariants: the average of a column adds rows 0..M-1 in order and
divides by M; rank 0 reads ``control[STOP_REQUEST]`` while averaging; a non-finite average or a
stop ends the block at that meeting, after adoption, with every rank agreeing; the barrier
backs off with ``sched_yield`` (more workers than cores still progress) and gives up when the
coordinator sets ``control[ABORT]``. With every rank in one process (serial backend) there is
no barrier: each phase runs for ranks 0..M-1 in turn, as in ``run_ranks``.

Busy-waiting needs loads the compiler cannot hoist out of the loop and stores it cannot sink:
``_load`` and ``_store`` emit LLVM seq_cst atomics (on x86-64 a plain load and an ``xchg``).
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from parsgd.problems.kernels.linear import LEAST_SQUARES, dense_step, sgd_dense
from parsgd.problems.kernels.vector import FAST

# Mirrors of team.py's constants (team imports this module, not the other way round).
_STOP_REQUEST, _ABORT = 0, 1
_NONFINITE, _STOP = 1, 2

# Statuses returned by ``rounds``.
OK, ABORTED, PARENT_GONE = 0, 1, 2

_SPINS_BEFORE_YIELD = 200
_YIELDS_BETWEEN_PARENT_CHECKS = 1000


def _register_libc() -> None:
    """Make ``sched_yield`` and ``getppid`` resolvable by compiled (and cached) code."""
    libc = ctypes.CDLL(None)
    for name in ("sched_yield", "getppid"):
        binding.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)


_register_libc()


def _load_impl(typingctx: Any, array: Any, index: Any) -> Any:
    """``array[index]`` as a seq_cst atomic load (int64 arrays)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx])
        return builder.load_atomic(ptr, "seq_cst", 8)

    return array.dtype(array, index), codegen


_load: Any = intrinsic(_load_impl)


def _store_impl(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
    """``array[index] = value`` as a seq_cst atomic store (int64 arrays)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty, idxty, valty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        val = context.cast(builder, args[2], valty, aryty.dtype)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx])
        builder.store_atomic(val, ptr, "seq_cst", 8)
        return context.get_dummy_value()

    return types.void(array, index, value), codegen


_store: Any = intrinsic(_store_impl)


def _extern_int_call(name: str) -> Any:
    @intrinsic
    def call(typingctx: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            fnty = ir.FunctionType(ir.IntType(32), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, name)
            return builder.sext(builder.call(fn, []), ir.IntType(64))

        return types.int64(), codegen

    return call


_sched_yield = _extern_int_call("sched_yield")
_getppid = _extern_int_call("getppid")


def _ticks_impl(typingctx: Any) -> Any:
    """The CPU's cycle counter (``llvm.readcyclecounter``; 0 where there is none)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return types.int64(), codegen


_ticks: Any = intrinsic(_ticks_impl)


# Columns per block of the average: a block of every row stays in L1 while it is summed.
_BLOCK = 512


@njit(cache=True, nogil=True)
def _average_block(W: np.ndarray, avg: np.ndarray, lo: int, hi: int, adopt: bool) -> bool:
    """``avg[lo:hi]`` = row mean (rows added 0..M-1, then / M); if ``adopt``, every row too.

    Loops run over slices from index 0: with ``W[r, j]`` and j from an arbitrary ``lo``, numba's
    negative-index wraparound hides the unit stride and LLVM emits gathers (5x slower).
    """
    M = W.shape[0]
    n = hi - lo
    a = avg[lo:hi]
    row = W[0, lo:hi]
    for k in range(n):
        a[k] = row[k]
    for r in range(1, M):
        row = W[r, lo:hi]
        for k in range(n):
            a[k] += row[k]
    finite = True
    for k in range(n):
        v = a[k] / M
        a[k] = v
        finite &= v - v == 0.0  # inf - inf and nan - nan are nan
    if adopt:
        for r in range(M):
            row = W[r, lo:hi]
            for k in range(n):
                row[k] = a[k]
    return finite


@njit(cache=True, nogil=True)
def average_chunk(W: np.ndarray, avg: np.ndarray, lo: int, hi: int, adopt: bool = False) -> bool:
    """Average columns lo..hi-1 of W into ``avg`` (and into every row if ``adopt``).

    The same operations in the same order as numpy's ``W[0] + W[1] + ...`` then ``/ M``, so
    the bits do not depend on the path. Blocks of columns keep each pass in L1 and vectorise.
    Returns True if the averaged chunk is finite.
    """
    finite = True
    for b in range(lo, hi, _BLOCK):
        finite &= _average_block(W, avg, b, min(b + _BLOCK, hi), adopt)
    return finite


@njit(cache=True, nogil=True, fastmath=FAST)  # FAST: dense_step's flags (it is inlined)
def _sgd_step(
    X: np.ndarray, y: np.ndarray, w: np.ndarray, uniform: float, eta: float, l2: float, code: int
) -> None:
    """One batch-1 step of ``sgd_dense``, the same operations, without its per-call buffers."""
    dense_step(X, y, w, min(int(uniform * X.shape[0]), X.shape[0] - 1), eta, l2, code)


@njit(cache=True, nogil=True)
def _wait(arrive: np.ndarray, control: np.ndarray, rank: int, generation: int, parent: int) -> int:
    """Spin barrier on per-rank counters: announce ``generation``, wait for every rank."""
    _store(arrive, rank, generation)
    spins = 0
    yields = 0
    M = arrive.shape[0]
    r = 0
    while r < M:
        if _load(arrive, r) >= generation:
            r += 1
            continue
        spins += 1
        if spins < _SPINS_BEFORE_YIELD:
            continue
        if _load(control, _ABORT) != 0:
            return ABORTED
        _sched_yield()
        yields += 1
        if yields % _YIELDS_BETWEEN_PARENT_CHECKS == 0 and _getppid() != parent:
            return PARENT_GONE
    return OK


@njit(cache=True, nogil=True)
def rounds(
    X: np.ndarray,
    y: np.ndarray,
    l2: float,
    code: int,
    W: np.ndarray,
    avg: np.ndarray,
    flags: np.ndarray,
    arrive: np.ndarray,
    control: np.ndarray,
    position: np.ndarray,
    ranks: np.ndarray,
    chunks: np.ndarray,
    u: np.ndarray,
    etas: np.ndarray,
    start: int,
    steps: np.ndarray,
    barrier: bool,
    generation: int,
    parent: int,
    ticks: np.ndarray,
) -> tuple[int, int, int, int]:
    """Run the plain meetings at ``steps`` (local steps from ``start``), for ``ranks``.

    ``u[k]`` and ``etas`` hold rank ``ranks[k]``'s uniforms and the step sizes of steps
    ``start .. steps[-1] - 1``; ``chunks[r]`` is rank r's column range. With ``barrier`` the
    ranks (one) meet the other processes' ranks on ``arrive``; without, ``ranks`` is every rank.
    Returns (status, meetings done, decision of the last one, barrier generation);
    ``ticks[0] += `` cycles of local steps, ``ticks[1] += `` cycles at meetings.
    """
    done = start
    M = W.shape[0]
    for m in range(steps.shape[0]):
        step = steps[m]
        tic = _ticks()
        for k in range(ranks.shape[0]):
            w = W[ranks[k]]
            if u.shape[2] == 1:  # per-sample steps: skip sgd_dense's buffers (~0.3 us a call)
                for t in range(done - start, step - start):
                    _sgd_step(X, y, w, u[k, t, 0], etas[t], l2, code)
            else:
                sgd_dense(
                    X,
                    y,
                    w,
                    u[k, done - start : step - start],
                    etas[done - start : step - start],
                    l2,
                    code,
                )
        done = step
        toc = _ticks()
        ticks[0] += toc - tic
        if barrier:
            generation += 1
            status = _wait(arrive, control, ranks[0], generation, parent)
            if status != OK:
                return status, m, 0, generation
        for k in range(ranks.shape[0]):
            r = ranks[k]
            # Each rank writes its averaged chunk into every row (the columns are its own
            # until the next barrier), so no rank copies the whole average afterwards.
            finite = average_chunk(W, avg, chunks[r, 0], chunks[r, 1], True)
            bits = 0 if finite else _NONFINITE
            if r == 0 and _load(control, _STOP_REQUEST) != 0:
                bits |= _STOP
            flags[r] = bits
        if barrier:
            generation += 1
            status = _wait(arrive, control, ranks[0], generation, parent)
            if status != OK:
                return status, m, 0, generation
        decision = 0
        for r in range(M):
            decision |= flags[r]
        for k in range(ranks.shape[0]):
            position[ranks[k]] = step
        ticks[1] += _ticks() - toc
        if decision != 0:
            return OK, m + 1, decision, generation
    return OK, steps.shape[0], 0, generation


def parent_pid() -> int:
    return os.getppid()


class FastRounds:
    """Runs blocks of a plan's plain meetings through ``rounds`` for one ``run_ranks`` call.

    Only for dense least squares on a finite pool (the problem whose kernel ``rounds`` calls);
    ``Team.fast_rounds`` returns None otherwise and ``run_ranks`` stays in Python.
    """

    def __init__(self, team: Any, ranks: list[int], sync: Any, max_uniforms: int) -> None:
        plan, M = team.plan, team.settings.workers
        self.team, self.ranks, self.sync = team, np.array(ranks, dtype=np.int64), sync
        self.barrier = len(ranks) < M
        self.parent = getattr(sync, "parent", 0)
        self.plain = plan.average & ~plan.record & ~plan.checkpoint
        breaks = np.flatnonzero(~self.plain)
        at = np.searchsorted(breaks, np.arange(len(self.plain)))
        self.run_end = np.append(breaks, len(self.plain))[at]
        self.chunks = np.array(team.chunks, dtype=np.int64).reshape(M, 2)
        per_step = team.problem.uniforms_per_step * len(ranks)
        self.max_steps = max(1, max_uniforms // per_step)
        self.ticks = np.zeros(2)

    def starts_at(self, index: int, done: int) -> bool:
        """Whether meeting ``index`` begins a block (plain, and its steps fit in one draw)."""
        return bool(self.plain[index]) and int(self.team.plan.steps[index]) - done <= self.max_steps

    def run(self, trial: int, index: int, done: int) -> tuple[int, int, float, float]:
        """Run plain meetings from ``index``.

        Returns (meetings done, decision of the last, seconds computing, seconds meeting).
        """
        team, plan, st = self.team, self.team.plan, self.team.state
        tic = time.perf_counter()
        end = int(self.run_end[index])
        last = int(np.searchsorted(plan.steps, done + self.max_steps, side="right"))
        steps = plan.steps[index : max(index + 1, min(end, last))]
        stop = int(steps[-1])
        u = np.stack([team.stream(trial, int(r)).uniforms(done, stop) for r in self.ranks])
        etas = team.settings.step_size.values(done, stop)
        problem = team.problem
        generation = self.sync.generation if self.barrier else 0
        self.ticks[:] = 0.0
        drawn = time.perf_counter()
        status, count, decision, generation = rounds(
            problem.X, problem.y, problem.l2, problem.code, st.W, st.avg, st.flags, st.arrive,
            st.control, st.position, self.ranks, self.chunks, u, etas, done, steps, self.barrier,
            generation, self.parent, self.ticks,
        )  # fmt: skip
        if self.barrier:
            self.sync.generation = generation
        toc = time.perf_counter()
        total = float(self.ticks.sum())
        share = self.ticks[0] / total if total > 0 else 1.0
        compute_s = (drawn - tic) + share * (toc - drawn)
        sync_s = (1.0 - share) * (toc - drawn)
        if status == ABORTED:
            from parsgd.engine.worker import Aborted

            raise Aborted
        if status == PARENT_GONE:
            from parsgd.engine.worker import ParentGone

            raise ParentGone
        return count, decision, compute_s, sync_s


def warm_up() -> None:
    """Compile (or load from the cache) ``rounds`` and ``average_chunk`` for the engine's types.

    Called before the workers fork, so each inherits the machine code instead of loading it
    inside its first trial's clock.
    """
    W, avg, i64 = np.zeros((1, 1)), np.zeros(1), np.zeros(1, dtype=np.int64)
    average_chunk(W, avg, 0, 1)
    rounds(
        W, avg, 0.0, LEAST_SQUARES, W, avg, i64.copy(), i64.copy(), np.zeros(4, dtype=np.int64),
        i64.copy(), i64.copy(), np.zeros((1, 2), dtype=np.int64), np.zeros((1, 1, 1)),
        np.zeros(1), 0, np.ones(1, dtype=np.int64), False, 0, 0, np.zeros(2),
    )  # fmt: skip
