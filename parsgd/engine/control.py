"""The control block every process of a run shares: slots, flag bits and meeting statuses.

A leaf module (numpy only), so that the signal handlers, the compiled meetings and the
coordinator name the same slots without importing one another.
"""

from __future__ import annotations

# Slots of the control block (int64, in shared memory). SPIN_NS, set once before the
# workers start: how long a waiting rank spins before it yields its core (barrier.py).
# HOLD, non-zero while the workers must not start their steps yet: an MPI node forks its
# workers before MPI_Init and clears it once MPI is up (worker.wait_for_start).
STOP_REQUEST, ABORT, SPIN_NS, HOLD = range(4)
N_CONTROL = 4

# Bits of a rank's flags word, OR-ed into the decision of a global meeting.
NONFINITE, STOP = 1, 2

# What a compiled barrier wait (and so a block of meetings) ends with.
OK, ABORTED, PARENT_GONE, STALLED = range(4)

# A peer that has not arrived this long after a stop request is treated as lost.
STOP_GRACE_S = 5.0

# Levels of a meeting. GROUP: members are the rank's group, which averages. GLOBAL: every
# rank meets and decides (stop, divergence); averaging meetings average over every rank.
# GROUP_RECORDED: a group averaging round that is also a recording (or checkpoint) meeting:
# every rank meets and decides, the group average is adopted, and the global average of
# the models (for the trace) goes into ``scratch``.
GROUP, GLOBAL, GROUP_RECORDED = 1, 2, 3
