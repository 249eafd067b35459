"""How long ``parsgd --help`` takes against ``python -c "import numpy"`` on the same machine.

Each command runs as a fresh interpreter, interleaved with the others (a neighbour's burst
slows them alike), and the median is taken: the ratio, not the seconds, is the figure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import numpy as np

COMMANDS: dict[str, list[str]] = {
    "import_numpy": ["-c", "import numpy"],
    "help": ["-m", "parsgd", "--help"],
    "plot_help": ["-m", "parsgd", "plot", "--help"],
    "sweep_help": ["-m", "parsgd", "sweep", "--help"],
}


def _seconds(args: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, timeout=60)
    return time.perf_counter() - tic


def measure(quick: bool) -> dict[str, Any]:
    """Median seconds of each command over interleaved repetitions."""
    reps = 3 if quick else 11
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for args in COMMANDS.values():  # one unmeasured round: the page cache
        _seconds(args)
    for _ in range(reps):
        for name, args in COMMANDS.items():
            samples[name].append(_seconds(args))
    return {name: float(np.median(values)) for name, values in samples.items()}
