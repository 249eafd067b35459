"""A small sweep on disk for the plot and report tests: averaging every 1, 10 and one-shot.

Fresh Gaussian samples every step (``data.stream: true``), so the closed form of PAPER.md
(iii) applies; the serial backend keeps it light on shared cores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import run_cli, write_config

EVERY = ("1", "10", "end")

# The runs of each kind, made once per test process (pristine: no test writes here), so
# that the plot, report and network tests pay for three CLI runs once, not once each.
_made: dict[bool, Path] = {}


def make_small_sweep(root: Path, *, stream: bool = True) -> Path:
    """Three tiny experiments in ``root/sweep/ev<H>/``, this caller's own copy; returns
    ``root/sweep``. Nothing in a run directory names where it is, so a copy reads as the
    runs themselves would."""
    if stream not in _made:
        _made[stream] = _run_small_sweep(root / "small-sweep-runs", stream)
    out = root / "sweep"
    shutil.copytree(_made[stream], out, symlinks=True)
    return out


def _run_small_sweep(root: Path, stream: bool) -> Path:
    root.mkdir()
    config = write_config(
        root / "base.yaml",
        backend="serial",
        trials=4,
        data={"d": 20, "noise": 0.5, "stream": stream},
        sgd={"steps": 200, "step_size": 0.06},
        eval={"every": 20},
    )
    out = root / "sweep"
    for every in EVERY:
        done = run_cli(
            "run",
            str(config),
            "--set",
            f"averaging.every={every}",
            "--set",
            f"name=ev{every}",
            "--out",
            str(out),
        )
        assert done.returncode == 0, done.stderr
    return out
