"""Bars of the time to a target, one per group: mean over the trials that got there, the
median, every trial as a dot, and groups that never got there said so. Drawn by
``parsgd plot --kind time-to-target|wallclock``; the numbers come from
``parsgd.analysis.curves.compute_target_times``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from parsgd.analysis.curves import TargetTimes
from parsgd.analysis.figure_style import colour, hatch, legend_outside
from parsgd.analysis.runs import describe_interval, describe_value
from parsgd.analysis.targets import Target


def draw_target_times(
    ax: Axes,
    times: Sequence[TargetTimes],
    *,
    keys: Sequence[str],
    target: Target,
    log: bool = False,
) -> None:
    """Bars: mean seconds to the target per group; dots: trials; text: groups that missed.

    ``log``: a log seconds axis, for groups whose times differ by decades.
    """
    positions = np.arange(len(times))
    means = [t.mean_s for t in times]
    reached = [m for m in means if m is not None]
    fastest = min(reached) if reached else None
    top = max(
        (max(*t.reached, t.mean_s + t.stderr_s) for t in times if t.mean_s is not None),
        default=1.0,
    )
    low = min((min(t.reached) for t in times if t.reached), default=top / 10) / 3 if log else 0.0
    rng = np.random.default_rng(0)  # jitter only, so the dots do not sit on one another
    for i, group in enumerate(times):
        total, got = len(group.seconds), len(group.reached)
        mean_s, median_s = group.mean_s, group.median_s
        if mean_s is None or median_s is None:
            ax.text(
                i,
                low * 1.3 if log else 0.02 * top,
                f"never reached\n(0/{total} trials)",
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.3",
            )
            continue
        ax.bar(
            i, mean_s, yerr=group.stderr_s, color=colour(i), hatch=hatch(i), alpha=0.75,
            capsize=4, width=0.6, bottom=0.0,
        )  # fmt: skip
        jitter = rng.uniform(-0.15, 0.15, size=got)
        ax.plot(i + jitter, group.reached, "o", color="0.15", markersize=3)
        # The median resists a slow first trial (a cold compile cache) that pulls the mean up.
        ax.plot(i, median_s, "D", color="white", markeredgecolor="0.1", markersize=6)
        notes = [] if got == total else [f"{got}/{total} trials reached"]
        if mean_s == fastest:
            notes.insert(0, "fastest")
        if notes:
            peak = max(*group.reached, mean_s + group.stderr_s)
            above = peak * 1.15 if log else peak + 0.03 * top
            ax.text(i, above, "\n".join(notes), ha="center", va="bottom", fontsize=8)
    if len(keys) <= 2:
        ax.set_xticks(positions, [_tick(keys, t.values) for t in times])
    else:  # long labels: number the bars and explain the numbers in a legend
        ax.set_xticks(positions, [f"({i + 1})" for i in range(len(times))])
        legend_outside(
            ax,
            [Line2D([], [], color=colour(i), linewidth=6) for i in range(len(times))],
            [f"({i + 1}) {t.label}" for i, t in enumerate(times)],
        )
    if log:
        ax.set_yscale("log")
        ax.set_ylim(low, top * 3)
    else:
        ax.set_ylim(0, top * 1.25)
    ax.set_xlim(-0.6, len(times) - 0.4)
    interval = list(keys) == ["averaging.every"]
    ax.set_xlabel(
        "averaging interval H (per-worker steps between averages)"
        if interval
        else ", ".join(keys) or "runs"
    )
    ax.set_ylabel(f"wall-clock seconds until {target.text}", fontsize=9)
    ax.set_title(
        "bars: mean ± s.e. over the trials that got there; ◇ median; dots: trials", fontsize=10
    )
    ax.grid(True, axis="y", alpha=0.3)


def _tick(keys: Sequence[str], values: tuple[object, ...]) -> str:
    if list(keys) == ["averaging.every"]:
        return describe_interval(values[0])
    return "\n".join(describe_value(k, v) for k, v in zip(keys, values, strict=True))
