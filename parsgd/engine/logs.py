"""log.txt: the coordinator's and every worker's log lines in one file.

Workers are forked, so ``multiprocessing-logging`` can carry their records to the
coordinator, which alone writes the file. It refuses to install when the process-wide start
method is not fork; then the stdlib QueueHandler/QueueListener pair does the same job.
"""

from __future__ import annotations

import logging
import logging.handlers
import multiprocessing
import sys
from pathlib import Path

import multiprocessing_logging

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
        self._wrapped = False
        if not multiprocess:
            for handler in self._handlers:
                self.logger.addHandler(handler)
        elif multiprocessing.get_start_method(allow_none=True) in (None, "fork"):
            for handler in self._handlers:
                self.logger.addHandler(handler)
            multiprocessing_logging.install_mp_handler(self.logger)
            self._wrapped = True
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
