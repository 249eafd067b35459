"""How figures tell lines apart and where their legends and titles go.

- Curve i gets colour ``C{i % 10}`` and, past ten curves, a line style and marker per
  cycle of ten, so 12 curves stay distinguishable (curve 0 solid, curve 10 dash-dot with
  squares). Dashed lines are kept for closed forms.
- The legend sits outside the axes, to their right, so it never covers data or a label.
- The default title is short: the sweep's name plus what varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

_COLOURS = 10
# Solid first; "--" is left out: it marks a closed form.
LINE_STYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
MARKERS = ("", "s", "^", "o")
HATCHES = ("", "//", "..", "xx")
_MARKERS_PER_LINE = 8


def curve_style(index: int) -> dict[str, Any]:
    """Matplotlib keyword arguments that make curve ``index`` unlike every other up to 40."""
    cycle = (index // _COLOURS) % len(LINE_STYLES)
    style: dict[str, Any] = {"color": colour(index), "linestyle": LINE_STYLES[cycle]}
    if MARKERS[cycle]:
        style.update(marker=MARKERS[cycle], markevery=0.125, markersize=4)
    return style


def colour(index: int) -> str:
    return f"C{index % _COLOURS}"


def hatch(index: int) -> str:
    """Bar hatching past ten bars, so bars that share a colour differ."""
    return HATCHES[(index // _COLOURS) % len(HATCHES)]


def legend_outside(ax: Axes, handles: list[Any], labels: list[str]) -> None:
    """The legend to the right of the axes (the figure is saved with a tight box)."""
    ax.legend(
        handles,
        labels,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        framealpha=0.9,
    )


def figure_legend(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """One legend for a figure of several panels, right of them all."""
    fig.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 0.95))


def sweep_name(paths: Sequence[Path]) -> str:
    """The sweep's name: the directory given, or the parent the directories share."""
    resolved = [p.resolve() for p in paths]
    if len(resolved) == 1:
        return resolved[0].name
    parents = {p.parent for p in resolved}
    if len(parents) == 1:
        return next(iter(parents)).name
    return f"{resolved[0].name} and {len(resolved) - 1} more"


def short_title(paths: Sequence[Path], what: str, keys: Sequence[str]) -> str:
    """``averaging: loss by averaging.every``: the sweep plus what varies."""
    varies = f" by {', '.join(keys)}" if keys else ""
    return f"{sweep_name(paths)}: {what}{varies}"


def legend_below(fig: Figure, handles: list[Any], labels: list[str]) -> None:
    """One legend under a figure of side-by-side panels, in as many columns as fit."""
    fig.legend(
        handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0),
        ncol=min(4, max(1, len(labels))), frameon=False,
    )  # fmt: skip
