"""log.txt: the coordinator's and every worker's log lines in one file.

The coordinator alone writes the file. Its own records go straight to the handlers; forked
workers inherit the same handler object, see they are not the coordinator, and send their
records down a pipe, which a listener thread in the coordinator reads.

Why not ``multiprocessing-logging`` or a ``multiprocessing.Queue``: the first's close waits
out a 0.2 s poll per handler (0.35 s per run, most of a tiny run's cost in a sweep). With
the second, a worker that logs and then ``os._exit``s can die while its queue feeder thread
holds the queue's cross-process lock, and the coordinator's next log record then blocks
forever. Here a worker sends in the logging call itself, so it never exits holding the
lock; it waits at most ``_SEND_TIMEOUT_S`` for a lock a killed peer left held, and the
coordinator never takes that lock.

``WorkerLogs`` is that pipe, its handler and its listener, for any process that forks
workers: the run log's (``RunLog``, backend ``processes``), and a node's rank under
``backend: mpi``, which forks its workers before log.txt exists and hands their records on
(mpi_node). Once every worker is forked, that rank closes its own end (``forked``): the
pipe then ends, with EOF, when the last worker is gone, dead or done, and the listener with it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from parsgd.engine.rundir import open_run_file

_FORMAT = "%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s"
_POLL_S = 0.02
_SEND_TIMEOUT_S = 1.0
_JOIN_TIMEOUT_S = 2.0


def _dispatch(handlers: list[logging.Handler], record: logging.LogRecord) -> None:
    for handler in handlers:
        if record.levelno >= handler.level:
            handler.handle(record)


class _ToCoordinator(logging.Handler):
    """In the coordinator: the file and console handlers. In a forked worker: the pipe."""

    def __init__(self, targets: list[logging.Handler], writer: Connection, send_lock: Any) -> None:
        super().__init__()
        self.owner = os.getpid()
        self.targets, self.writer, self.send_lock = targets, writer, send_lock

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() == self.owner:
            _dispatch(self.targets, record)
            return
        try:
            prepared = copy.copy(record)
            prepared.msg = prepared.message = self.format(record)  # message + traceback
            prepared.args, prepared.exc_info, prepared.exc_text = None, None, None
            if self.send_lock.acquire(timeout=_SEND_TIMEOUT_S):
                try:
                    self.writer.send(prepared)
                finally:
                    self.send_lock.release()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.writer.close()
        super().close()


class WorkerLogs:
    """Forked workers' log records, down one pipe to the process that forked them.

    Installed on ``logger`` before the fork. In this process the handler passes its own
    records to ``targets``; in a forked worker it sends them down the pipe, and a listener
    thread here hands each one to ``deliver``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        targets: list[logging.Handler],
        deliver: Callable[[logging.LogRecord], None],
    ) -> None:
        context = multiprocessing.get_context("fork")
        self._reader, writer = context.Pipe(duplex=False)
        self.handler = _ToCoordinator(targets, writer, context.Lock())
        self.logger = logger
        logger.addHandler(self.handler)
        self._deliver = deliver
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="log-listener", daemon=True)
        self._listener.start()

    def forked(self) -> None:
        """Every worker is forked: this process lets go of the pipe's writing end, so the
        pipe ends (EOF) when the last worker is gone."""
        with contextlib.suppress(OSError):
            self.handler.writer.close()

    def _listen(self) -> None:
        """Deliver the workers' records until told to stop and the pipe is drained, or
        until it ends."""
        while True:
            if not self._reader.poll(0 if self._stop.is_set() else _POLL_S):
                if self._stop.is_set():
                    return
                continue
            try:
                record = self._reader.recv()
            except Exception:  # EOF: every worker gone; or one killed mid-send: lost from here
                return
            self._deliver(record)

    def ended(self, timeout_s: float = _JOIN_TIMEOUT_S) -> bool:
        """After ``forked``: wait up to ``timeout_s`` for the pipe to end (every worker has
        exited, every record delivered); whether it did."""
        self._listener.join(timeout_s)
        return not self._listener.is_alive()

    def close(self) -> None:
        """Deliver what is in the pipe, stop listening, take the handler off the logger."""
        self._stop.set()
        self._listener.join(_JOIN_TIMEOUT_S)
        with contextlib.suppress(OSError):
            self._reader.close()
        self.logger.removeHandler(self.handler)
        self.handler.close()


class RunLog:
    def __init__(self, path: Path, multiprocess: bool) -> None:
        self.logger = logging.getLogger("parsgd")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        file_handler = logging.FileHandler(path, mode="a", delay=True)
        # Opened here, never through a symlink planted in the run directory.
        fd = open_run_file(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        file_handler.stream = os.fdopen(fd, "a")
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("parsgd: %(levelname)s: %(message)s"))
        self._handlers: list[logging.Handler] = [file_handler, console]
        self._workers: WorkerLogs | None = None
        if not multiprocess:
            for handler in self._handlers:
                self.logger.addHandler(handler)
            return
        handlers = self._handlers
        self._workers = WorkerLogs(self.logger, handlers, lambda r: _dispatch(handlers, r))

    def close(self) -> None:
        if self._workers is not None:
            self._workers.close()
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        for handler in self._handlers:
            handler.close()
