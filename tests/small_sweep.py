"""A small sweep on disk for the plot and report tests: averaging every 1, 10 and one-shot.

Fresh Gaussian samples every step (``data.stream: true``), so the closed form of PAPER.md
(iii) applies; the serial backend keeps it light on shared cores.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli, write_config

EVERY = ("1", "10", "end")


def make_small_sweep(root: Path, *, stream: bool = True) -> Path:
    """Run three tiny experiments into ``root/sweep/ev<H>/``; returns ``root/sweep``."""
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
