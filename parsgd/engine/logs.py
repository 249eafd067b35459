"""log.txt: the coordinator's and every worker's log lines in one file.

Workers are forked and inherit a ``QueueHandler`` on the ``parsgd`` logger; the coordinator
alone writes the file, from a ``QueueListener`` thread. (``multiprocessing-logging`` did the
same, but its close waits out a 0.2 s poll per handler: 0.35 s per run, the largest cost of a
tiny run in a sweep. The listener stops at once on its sentinel.)
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import sys
from pathlib import Path

_FORMAT = "%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s"


class RunLog:
    def __init__(self, path: Path, multiprocess: bool) -> None:
        self.logger = logging.getLogger("parsgd")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        file_handler = logging.FileHandler(path, mode="a")
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("parsgd: %(levelname)s: %(message)s"))
        self._handlers: list[logging.Handler] = [file_handler, console]
        self._listener: logging.handlers.QueueListener | None = None
        if not multiprocess:
            for handler in self._handlers:
                self.logger.addHandler(handler)
        else:
            queue = multiprocessing.get_context("fork").Queue(-1)
            self._listener = logging.handlers.QueueListener(
                queue, *self._handlers, respect_handler_level=True
            )
            self._listener.start()
            self.logger.addHandler(logging.handlers.QueueHandler(queue))

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        for handler in self._handlers:
            handler.close()
