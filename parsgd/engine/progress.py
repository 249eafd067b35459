"""The progress bar: one line, redrawn, shown only on a terminal (a run's steps, a sweep's runs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_SHOW_AFTER_S = 2.0
_REFRESH_S = 0.2
_WIDTH = 30


def bar(fraction: float) -> str:
    """``[#####-----]``: the bar both a run and a sweep draw."""
    filled = int(min(1.0, max(0.0, fraction)) * _WIDTH)
    return "[" + "#" * filled + "-" * (_WIDTH - filled) + "]"


class ProgressBar:
    """A run's steps, shown only once the run has taken a while."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total, self.label = max(1, total), label
        self.stream = stream if stream is not None else sys.stdout
        self.enabled = self.stream.isatty()
        self._started = time.monotonic()
        self._drawn = 0.0
        self._visible = False

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._started < _SHOW_AFTER_S or now - self._drawn < _REFRESH_S:
            return
        self._drawn = now
        fraction = min(1.0, done / self.total)
        elapsed = now - self._started
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        self.stream.write(
            f"\r{self.label} {bar(fraction)} {fraction:6.1%} {elapsed:6.1f}s elapsed, "
            f"~{eta:.0f}s left"
        )
        self.stream.flush()
        self._visible = True

    def close(self) -> None:
        if self._visible:
            self.stream.write("\n")
            self.stream.flush()
            self._visible = False
