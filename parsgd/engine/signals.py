"""Ctrl-C, SIGTERM, SIGHUP and SLURM's warning signal: stop at the next meeting, or now if
asked twice.

The first signal only sets the stop request in the team's control block: rank 0 reads it at
the next meeting, every worker stops there, and the runner writes a checkpoint. A second
signal raises KeyboardInterrupt so the coordinator kills the workers at once, but never in
the middle of writing a results file: inside ``critical()`` it is deferred to the end. Any
further signal is only noted: the shutdown it would cut short is what saves the results.
SIGHUP (the terminal closed) is a stop like SIGTERM, so the run still ends with a final
run.json. Once a stopped run is over, later stop signals are ignored for the rest of the
process, which is exiting 130 anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import numpy as np

from parsgd.engine.control import STOP_REQUEST

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)


class StopSignals:
    def __init__(self, control: np.ndarray | None = None) -> None:
        # None until the run's control block exists: a signal then aborts the start-up.
        self.control = control
        self.received: str | None = None
        self._previous: dict[int, Any] = {}
        self._depth = 0
        self._pending: str | None = None
        self._raised = False  # the one "stop now" KeyboardInterrupt is on its way
        # Set (a plain store, no call: Python runs a pending handler only at a call or a
        # jump) as the runner's final bookkeeping begins: from there no signal may raise. A
        # signal that arrived just before ``signals_ignored`` took hold used to raise there
        # and skip the final run.json (exit 130 with status "running").
        self.settled = False

    def __enter__(self) -> StopSignals:
        # A signal the process was started with ignored (nohup, a sweep's run process) stays
        # ignored, as Python itself leaves SIGINT alone when it starts ignored.
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            # A stopped run is recorded; a late signal must not kill the exiting process
            # with -SIGTERM instead of its exit status 130.
            signal.signal(sig, signal.SIG_IGN if self.received else handler)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a second signal must not cut in half (writing a trace row, a checkpoint)."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._pending is not None:
                pending, self._pending = self._pending, None
                self._raised = True
                raise KeyboardInterrupt(pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.settled:
            return
        if self.control is None:
            raise KeyboardInterrupt(f"{name} before the run started")
        if self.received is None:
            self.received = name
            self.control[STOP_REQUEST] = 1
            # os.write: the logging module is not safe to enter from a signal handler.
            os.write(
                2,
                f"parsgd: {name}: stopping at the next meeting "
                "(send it again to stop now)\n".encode(),
            )
            return
        if self._raised or self._pending is not None:
            return  # a third signal: the stop it asks for is already under way
        reason = f"second signal ({name})"
        if self._depth:
            self._pending = reason
        else:
            self._raised = True
            raise KeyboardInterrupt(reason)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Hold stop signals off while the final run.json is written."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block stop signals around fork, so a child never dies of Ctrl-C before it ignores it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
