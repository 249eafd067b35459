"""The meeting, once, compiled: local steps and meetings alternate inside one numba call.

A block of meetings runs for the ranks of this process (one rank behind a barrier for the
processes backend, every rank in turn for the serial backend). For each meeting:

    local steps     rank r steps its model, row r of buffer ``cur`` (the problem's kernel)
    fetch ahead     the next step's sample starts to come in from memory (a prefetch)
    announce        rank r publishes, in its line of ``arrive``, the step it reached and at
                    a global meeting its flags (stop request, earlier non-finite averages
                    of its group) for this meeting's side (parity)
    barrier         one per meeting: the meeting's members have published their rows
    average         rank r reads the members' rows of ``cur`` and writes the average into
                    its own row of buffer ``nxt`` (or into ``scratch`` if it does not adopt)
    decision        global: OR of every rank's flags and the average's finiteness

The model table is double-buffered (``W[2, rows, d + padding]``, meeting i reads buffer i % 2 and
writes buffer (i + 1) % 2): a rank writes a buffer only after the next barrier, by which time
every reader of that buffer's previous contents has arrived there. So one barrier per round
suffices, and each rank computes the whole average itself, in the same order as every other
rank, so every rank holds the same bits. After a global meeting, the next barrier waits for
every rank, even at a group meeting, because other groups may still read the global rows.

The group interface (what a meeting needs of the workers it averages over) is the tuple
(barrier over members, average of members' rows, OR of flags, sum of statistics). Here its
shared-memory implementation: members are the ranks ``[g * group, (g + 1) * group)`` of one
node (group level) or every rank (global level). The average of a global meeting is the sum
over groups, in group order, of each group's rows summed in row order, divided by the number
of rows: a backend spanning nodes plugs in by supplying the other nodes' group sums in that
fixed order (an Allgather of node sums, then a fixed-order sum; never Allreduce's order),
which gives the same bits as the shared-memory run with ``nodes`` groups.

Recording and checkpoint meetings end a block: Python computes statistics there.

What the common meeting calls (the average, ``steps.advance`` and ``step``) is inlined into
``run_block`` by numba itself (``inline="always"``). The objective loops keep their own
functions, since their ``fastmath`` flags would not survive inlining, and so do the rare
cases (``_meet_row``: group levels, an average kept for statistics, momentum buffers; the
momentum loop), whose branches would otherwise cost the common meeting its registers.
``run_block`` borrows its array arguments (``views.borrowed``), so no view and no call
takes a reference count: each would be a locked instruction, a fence that waits until this
core's stores reach the peer's cache (ten a meeting, pca d = 10, before).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.engine.atomics import load_acquire, ticks
from parsgd.engine.barrier import FLAGS, PAD, POSITION, wait
from parsgd.engine.control import GLOBAL, GROUP, NONFINITE, OK, STOP, STOP_REQUEST
from parsgd.problems.steps import Pack, advance, fetch_ahead
from parsgd.views import borrowed

# averaging.momentum: what a round that adopts an average does to a rank's momentum buffer
# (the second half of its row when sgd.momentum > 0): average it with the model, zero it,
# or keep the rank's own.
MOMENTUM_AVERAGE, MOMENTUM_RESET, MOMENTUM_KEEP = 0, 1, 2
MOMENTUM_MODES = {"average": MOMENTUM_AVERAGE, "reset": MOMENTUM_RESET, "keep": MOMENTUM_KEEP}

# Columns per block of the average: a block of every row stays in L1 while it is summed.
_BLOCK = 512

# Which meetings read the clock (``run_block``): a cycle-counter read costs ~8 ns here, two a
# meeting were 15-17 ns of a 100 ns pca meeting at every 1 (serial backend, d = 10).
_TIMED_STEPS = 64  # local steps enough that three reads are under 1 % of them
_SAMPLED = 8  # otherwise one meeting in 8 (a power of two: the modulo is a mask)


@njit(cache=True, nogil=True, inline="always")
def _sum_rows(table: np.ndarray, lo: int, hi: int, b: int, n: int, out: np.ndarray) -> None:
    """``out[:n] = table[lo, b:b+n] + ... + table[hi-1, b:b+n]``, rows added in order.

    Loops run over slices from index 0: with ``table[r, j]`` and j from an arbitrary ``b``,
    numba's negative-index wraparound hides the unit stride and LLVM emits gathers.
    """
    row = borrowed(table[lo, b : b + n])
    for k in range(n):
        out[k] = row[k]
    for r in range(lo + 1, hi):
        row = borrowed(table[r, b : b + n])
        for k in range(n):
            out[k] += row[k]


@njit(cache=True, nogil=True, inline="always")
def average_rows(
    table: np.ndarray, lo: int, hi: int, group: int, out: np.ndarray, tmp: np.ndarray
) -> bool:
    """``out`` = average of rows lo..hi-1: per group of ``group`` rows their sum in row order,
    the group sums added in group order, divided by the row count. True if finite.

    With one group this is numpy's ``(W[lo] + W[lo + 1] + ...) / n``, bit for bit.
    """
    d = out.shape[0]  # table's rows may be padded past d
    count = hi - lo
    scale = 1.0 / count
    finite = True
    for b in range(0, d, _BLOCK):
        n = min(_BLOCK, d - b)
        acc = borrowed(out[b : b + n])
        _sum_rows(table, lo, min(lo + group, hi), b, n, acc)
        for g in range(lo + group, hi, group):
            _sum_rows(table, g, min(g + group, hi), b, n, tmp)
            for k in range(n):
                acc[k] += tmp[k]
        if count & (count - 1) == 0:  # x * 2**-k is x / 2**k, bit for bit, and ~10x cheaper
            for k in range(n):
                v = acc[k] * scale
                acc[k] = v
                finite &= v - v == 0.0  # inf - inf and nan - nan are nan
        else:
            for k in range(n):
                v = acc[k] / count
                acc[k] = v
                finite &= v - v == 0.0
    return finite


@njit(cache=True, nogil=True, inline="always")
def settle_buffer(adopted: np.ndarray, own: np.ndarray, d: int, mode: int) -> None:
    """After a row adopted an average of whole rows ``[w, v]``: its buffer ``adopted[d:]``
    is that average (average), zero (reset) or the rank's own before the round (keep).
    ``d == 0``: no momentum, rows are models alone."""
    if d == 0 or mode == MOMENTUM_AVERAGE:
        return
    for j in range(d, adopted.shape[0]):
        adopted[j] = 0.0 if mode == MOMENTUM_RESET else own[j]


@njit(cache=True, nogil=True)
def _meet_row(
    table: np.ndarray,
    table_next: np.ndarray,
    spare: np.ndarray,
    tmp: np.ndarray,
    row: int,
    row_group: int,
    level: int,
    adopt: bool,
    two_buffers: bool,
    d_buffer: int,
    momentum_mode: int,
) -> bool:
    """Row ``row``'s part of any meeting but the common one (``run_block``): a group level,
    a global average kept in ``spare`` for statistics (copied forward if ``two_buffers``),
    or momentum buffers to settle.
    Returns the finiteness of the average the level decides on. A function of its own, not
    inlined: in ``run_block`` its branches cost the common meeting registers and ~30 ns a
    rank (pca d = 10, serial backend)."""
    d = spare.shape[0]
    adopted = table_next[row, :d]
    finite = True
    if level != GROUP:
        # The global average: adopted, or kept in spare for statistics.
        out = adopted if adopt and level == GLOBAL else spare
        finite = average_rows(table, 0, table.shape[0], row_group, out, tmp)
    if level != GLOBAL:
        lo = (row // row_group) * row_group
        finite_group = average_rows(table, lo, lo + row_group, row_group, adopted, tmp)
        if level == GROUP:
            finite = finite_group
    elif not adopt and two_buffers:
        table_next[row, :] = table[row, :]
    if level != GLOBAL or adopt:
        settle_buffer(adopted, table[row, :d], d_buffer, momentum_mode)
    return finite


@njit(cache=True, nogil=True)
def run_block(
    data: Pack,
    W: np.ndarray,
    scratch: np.ndarray,
    tmp: np.ndarray,
    arrive: np.ndarray,
    control: np.ndarray,
    ranks: np.ndarray,
    rows: np.ndarray,
    group: int,
    row_group: int,
    inputs: np.ndarray,
    etas: np.ndarray,
    start: int,
    steps: np.ndarray,
    levels: np.ndarray,
    adopt: np.ndarray,
    first: int,
    barrier: bool,
    parent: int,
    state: np.ndarray,
    pending: np.ndarray,
    cycles: np.ndarray,
    beta: float = 0.0,
    nesterov: bool = False,
    momentum_mode: int = MOMENTUM_AVERAGE,
) -> tuple[int, int, int]:
    """Run the meetings at ``steps`` (meeting indices ``first``...), local steps from ``start``.

    ``inputs[k]`` and ``etas`` hold rank ``ranks[k]``'s prepared inputs and the step sizes of
    steps ``start .. steps[-1] - 1``. ``rows[r]`` is rank r's row of the table; ``group`` ranks
    (``row_group`` rows) form a group. ``state`` = [barrier generation, last meeting global],
    ``pending[k]`` = rank ``ranks[k]``'s group flags not yet decided globally; both carry over
    between blocks. Returns (status, meetings done, decision of the last one);
    ``cycles[0] +=`` cycles of local steps, ``cycles[1] +=`` cycles at meetings (estimates,
    from the meetings that read the clock, with weights: only their ratio is used).
    ``beta > 0``: rows are ``[w, v]`` with momentum buffers (``steps.advance``), averaged
    with the models and then settled by ``momentum_mode`` (``settle_buffer``).
    """
    M = arrive.shape[0] // PAD
    # Every array argument borrowed (views.py), and so every view of one: a view, or an
    # argument handed to a call or an inlined function (the step, the barrier, the average),
    # would otherwise take and drop a reference each meeting. Those are locked instructions,
    # and each waits until this core's earlier stores (the row just stepped or averaged,
    # whose lines the peer holds) have reached the peer: pca d = 10 at every 1 made ten a
    # meeting, M = 2 processes, every-1 / every-end 0.107 -> 0.149 (6 interleaved runs).
    data, W, scratch, tmp = borrowed(data), borrowed(W), borrowed(scratch), borrowed(tmp)
    arrive, control = borrowed(arrive), borrowed(control)
    inputs, etas = borrowed(inputs), borrowed(etas)
    d = scratch.shape[1]  # W's rows are padded to whole cache lines past d
    flip = W.shape[0] - 1  # two buffers (meeting i reads i & 1), or one (hogwild): 1 or 0
    n_rows = W.shape[1]
    d_buffer = d // 2 if beta > 0.0 else 0
    plain = d_buffer == 0 or momentum_mode == MOMENTUM_AVERAGE  # rows adopted as averaged
    done = start
    tic = toc = 0
    for m in range(steps.shape[0]):
        at = steps[m]
        index = first + m
        cur = index & flip  # bit operations: an integer division costs ~15 cycles a meeting
        nxt = (index + 1) & flip
        level = levels[m]
        is_global = level != GROUP
        # Time this meeting (three clock reads) if its local steps are many, else one meeting
        # in _SAMPLED, weighted by _SAMPLED: the split of compute and meeting time stays an
        # unbiased estimate, and a short meeting does not pay two clock reads of its own.
        weight = (
            1 if at - done >= _TIMED_STEPS else (_SAMPLED if index & (_SAMPLED - 1) == 0 else 0)
        )
        if weight != 0:
            tic = ticks()
        if at > done:
            for k in range(ranks.shape[0]):
                w = W[cur, rows[ranks[k]], :d]
                x = inputs[k, done - start : at - start]
                eta = etas[done - start : at - start]
                advance(data, ranks[k], w, x, eta, beta, nesterov)
        done = at
        if weight != 0:
            toc = ticks()
            cycles[0] += weight * (toc - tic)
        side = index & 1  # flags are double-buffered even when the table is not (hogwild)
        for k in range(ranks.shape[0]):
            line = ranks[k] * PAD
            arrive[line + POSITION] = at
            if is_global:
                bits = pending[k]
                if ranks[k] == 0 and load_acquire(control, STOP_REQUEST) != 0:
                    bits |= STOP
                arrive[line + FLAGS + side] = bits
        if at - start < inputs.shape[1]:  # the next step's sample comes in while we meet
            for k in range(ranks.shape[0]):
                fetch_ahead(data, inputs[k, at - start])
        if barrier:
            r = ranks[0]
            lo, hi = 0, M
            if not is_global and state[1] == 0:
                lo = (r // group) * group
                hi = lo + group
            state[0] += 1
            status = wait(arrive, control, r, state[0], lo, hi, parent)
            if status != OK:
                return status, m, 0
        state[1] = 1 if is_global else 0
        flags = 0
        if is_global:  # read now, while the barrier has just brought the members' lines here
            for s in range(M):
                flags |= arrive[s * PAD + FLAGS + side]
        decision = 0
        table, table_next = W[cur], W[nxt]
        for k in range(ranks.shape[0]):
            row = rows[ranks[k]]
            if level == GLOBAL and adopt[m] and plain:  # the common meeting, kept lean here
                finite = average_rows(table, 0, n_rows, row_group, table_next[row, :d], tmp)
            else:
                finite = _meet_row(
                    table, table_next, scratch[k], tmp, row, row_group, level, bool(adopt[m]),
                    nxt != cur, d_buffer, momentum_mode,
                )  # fmt: skip
            if is_global:
                decision = flags if finite else flags | NONFINITE
                pending[k] = 0
            elif not finite:
                pending[k] |= NONFINITE
        if weight != 0:
            cycles[1] += weight * (ticks() - toc)
        if decision != 0:
            return OK, m + 1, decision
    return OK, steps.shape[0], 0
