"""The one barrier of the engine: per-rank generation counters in shared memory.

Each rank announces a meeting by a release store of its generation into its own counter (one
128-byte line each, so announcing does not evict the others'), then waits until every member
of the meeting has reached it, with acquire loads. Waiting backs off as the wait grows: a
spin of up to 20 us where every rank has a core, adapting to how waits end (a peer that is
running arrives within microseconds), then ``sched_yield`` (a peer
that lost its core gets it back within its time slice), then sleeps growing with the wait up
to a millisecond (more workers than cores, a peer evaluating a large loss). While it waits it
watches the abort flag (a peer died), its parent (the coordinator died) and, once a stop was
requested, a deadline: a peer that never arrives (SIGSTOP) cannot hold a stop request forever.

Compiled, so the compiled meetings call it directly; Python calls the same function at the
recording meetings.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from parsgd.engine.atomics import (
    getppid,
    load_acquire,
    monotonic_ns,
    sched_yield,
    store_release,
    usleep,
)
from parsgd.engine.control import (
    ABORT,
    ABORTED,
    OK,
    PARENT_GONE,
    SPIN_NS,
    STALLED,
    STOP_GRACE_S,
    STOP_REQUEST,
)

# int64 slots per rank's line: 128 bytes, a cache line (two on x86-64's adjacent-line
# prefetch), so that ranks announcing at once do not contend for one line.
PAD = 16
# What a rank announces at a meeting, in its own line, written by it alone: the generation
# (the barrier counter), the step it has reached, and its flags for each of the two sides
# (meeting parity) of a global meeting. Position and flags are plain stores made just before
# the release store of the generation, so a peer that sees the generation sees them, and
# they cross to the peer's core with the line the barrier moves anyway.
GENERATION, POSITION, FLAGS = 0, 1, 2  # FLAGS + side
# Also the rank's own spin level (below), which only it reads and writes.
SPIN_LEVEL = 4

_SPINS = 256  # loads between two clock reads: ~0.3 us
# Where every rank has a core, spin for the first 20 us of a wait: a peer that has its core
# arrives within a few microseconds, and a sched_yield costs ~0.6 us here (a system call),
# which the waiter would add to the meeting for a peer that arrives meanwhile. At every: 1 a
# rank often waits longer than 256 loads for the other's ordinary lead (a cache miss, an
# interrupt). Where ranks share cores, a spin only keeps the peer it waits for off the core:
# yield at once (``spin_budget``; the budget is the control block's SPIN_NS).
SPIN_WITH_CORES_NS = 20_000
# The spin adapts, as an adaptive mutex's does: a rank whose wait outlasted the whole budget
# (its peer had lost its core: another process competes for the cores) halves its next
# spin, down to 1/64 (~0.3 us, the loads before the first clock read); one whose wait ended
# within the budget doubles it back. With a CPU-bound competitor on two cores (parsgd bench's
# contention row, M = 2, every 1, d = 100) the median meeting cost 6 us yielding at once,
# 21-26 us with a fixed 20 us spin, 15 us adapting; alone, 1-2 us in all three.
_MAX_SPIN_LEVEL = 6
# Then yield the core for up to 2 ms of waiting: a peer that lost its core (more runnable
# processes than cores) gets it back at once, where a sleep would cost at least the kernel's
# timer slack (~50 us) every time.
_YIELD_NS = 2_000_000
_MAX_SLEEP_US = 1000  # then sleep waited/16 (from 125 us), capped at 1 ms
# Twice the coordinator's grace: it names the worker that did not arrive before a waiting
# peer gives up (this deadline is the fallback for a coordinator that cannot act).
_STOP_GRACE_NS = int(2 * STOP_GRACE_S * 1e9)


# A coordinator that watches a barrier (``arrived``) shares the cores with the workers it
# waits for: it yields at once (no spin), for 200 us only, then sleeps at most 200 us.
_WATCH_YIELD_NS = 200_000
_WATCH_MAX_SLEEP_US = 200


@njit(cache=True, nogil=True, inline="always")
def _back_off(waited: int, spin_ns: int, yield_ns: int, max_sleep_us: int) -> None:
    """After ``waited`` ns of waiting: go on spinning, then yield the core, then sleep
    waited/16, capped."""
    if waited < spin_ns:
        return
    if waited < yield_ns:
        sched_yield()
    else:
        usleep(max(1, min(waited // 16_000, max_sleep_us)))


@njit(cache=True, nogil=True, inline="always")
def _first_behind(arrive: np.ndarray, r: int, hi: int, generation: int) -> int:
    """The first of ranks r..hi-1 not yet at ``generation`` (acquire loads), or ``hi``."""
    while r < hi and load_acquire(arrive, r * PAD + GENERATION) >= generation:
        r += 1
    return r


def spin_budget(ranks_here: int, cores: int) -> int:
    """The spin of a wait before it yields, for ``ranks_here`` waiting ranks on ``cores``."""
    return SPIN_WITH_CORES_NS if ranks_here <= cores else 0


@njit(cache=True, nogil=True, inline="always")
def _adapt(arrive: np.ndarray, slot: int, level: int, started: int, budget: int) -> None:
    """After a wait that began its clock at ``started`` (0: the peer was there within the
    first loads, which says nothing about spinning): a longer spin next time if it ended
    within ``budget``, a shorter one if it outlasted it."""
    if started == 0:
        return
    if monotonic_ns() - started > budget:
        if level < _MAX_SPIN_LEVEL:
            arrive[slot] = level + 1
    elif level > 0:
        arrive[slot] = level - 1


@njit(cache=True, nogil=True)
def wait(
    arrive: np.ndarray,
    control: np.ndarray,
    rank: int,
    generation: int,
    lo: int,
    hi: int,
    parent: int,
) -> int:
    """Announce ``generation`` for ``rank`` and wait for ranks lo..hi-1 to reach it.

    Returns OK, ABORTED (the coordinator set the abort flag), PARENT_GONE (the coordinator is
    not our parent any more) or STALLED (a stop was requested and a member did not arrive
    within twice STOP_GRACE_S).
    """
    store_release(arrive, rank * PAD + GENERATION, generation)
    r = lo
    spins = 0
    started = 0
    stop_seen = 0
    budget = control[SPIN_NS]
    level = arrive[rank * PAD + SPIN_LEVEL]
    spin_ns = budget >> level
    while True:
        r = _first_behind(arrive, r, hi, generation)
        if r == hi:
            if budget > 0:
                _adapt(arrive, rank * PAD + SPIN_LEVEL, level, started, budget)
            return OK
        spins += 1
        if spins < _SPINS:
            continue
        if load_acquire(control, ABORT) != 0:
            return ABORTED
        now = monotonic_ns()
        if started == 0:
            started = now
        waited = now - started
        if load_acquire(control, STOP_REQUEST) != 0:
            if stop_seen == 0:
                stop_seen = now
            elif now - stop_seen > _STOP_GRACE_NS:
                return STALLED
        if waited >= _YIELD_NS and getppid() != parent:  # checked only once sleeping
            return PARENT_GONE
        spins = 0
        _back_off(waited, spin_ns, _YIELD_NS, _MAX_SLEEP_US)


@njit(cache=True, nogil=True)
def arrived(
    arrive: np.ndarray, control: np.ndarray, generation: int, lo: int, hi: int, budget: int
) -> bool:
    """True once ranks lo..hi-1 have reached ``generation``; False after ``budget`` ns (or on
    abort). For a coordinator that stands in for other ranks at a barrier (``backend: mpi``):
    it watches without announcing, backing off as ``wait`` does but sooner."""
    r = lo
    spins = 0
    started = 0
    while True:
        r = _first_behind(arrive, r, hi, generation)
        if r == hi:
            return True
        spins += 1
        if spins < _SPINS:
            continue
        if load_acquire(control, ABORT) != 0:
            return False
        now = monotonic_ns()
        if started == 0:
            started = now
        waited = now - started
        if waited > budget:
            return False
        spins = 0
        _back_off(waited, 0, _WATCH_YIELD_NS, _WATCH_MAX_SLEEP_US)


@njit(cache=True, nogil=True)
def release(arrive: np.ndarray, lo: int, hi: int, generation: int) -> None:
    """Announce ``generation`` for ranks lo..hi-1 (ranks another process stands in for)."""
    for r in range(lo, hi):
        store_release(arrive, r * PAD + GENERATION, generation)
