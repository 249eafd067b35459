"""Final values against a swept key, drawn: ``parsgd plot --kind final``.

Each series is the mean over trials (markers joined by a solid line, error bars of one
standard error), its closed form dashed in the same colour where one is known. The numbers
come from ``parsgd.analysis.finals``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from parsgd.analysis.figure_style import curve_style, legend_outside
from parsgd.analysis.finals import FinalSeries

_LOG_SPAN = 100.0  # a log axis when the positive values span more than two decades


def draw_finals(
    ax: Axes,
    series: Sequence[FinalSeries],
    *,
    xlabel: str,
    ylabel: str,
    log: bool = False,
    logx: bool = False,
) -> None:
    """Means with standard-error bars per x value, one line per series, closed forms dashed;
    log axes where asked or where the values span more than two decades."""
    for i, line in enumerate(series):
        style = curve_style(i)
        style.pop("markevery", None)
        style.setdefault("marker", "o")
        trials = ", ".join(sorted({str(int(t)) for t in line.trials}))
        ax.errorbar(
            line.positions, line.mean, yerr=line.stderr, capsize=3, linewidth=1.6,
            markersize=4, label=f"{line.label} ({trials} trials per point)", **style,
        )  # fmt: skip
        if line.theory is not None:
            ax.plot(line.positions, line.theory, color=style["color"], linestyle="--", lw=1.3)
    positions = np.concatenate([s.positions for s in series]) if series else np.array([])
    if logx or _spans(positions):
        ax.set_xscale("log")
    if log or _spans(np.concatenate([s.mean for s in series]) if series else np.array([])):
        ax.set_yscale("log")
    ticks = {p: t for s in series for p, t in zip(s.positions, s.ticks, strict=True)}
    ax.set_xticks(list(ticks), list(ticks.values()))
    ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any(s.theory is not None for s in series):
        handles.append(Line2D([], [], color="0.2", linestyle="--"))
        labels.append("closed form (dashed)")
    handles.append(Line2D([], [], color="0.4", marker="|", linestyle="", markersize=10))
    labels.append("mean ± standard error over trials")
    legend_outside(ax, handles, labels)


def _spans(values: np.ndarray) -> bool:
    positive = values[np.isfinite(values) & (values > 0)]
    return positive.size > 1 and positive.max() / positive.min() > _LOG_SPAN
