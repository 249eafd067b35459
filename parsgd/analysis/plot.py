"""``parsgd plot``: figures of finished runs, written to PNG, PDF or SVG (no display needed).

Three kinds of figure:

- ``curves`` (default): a trace column (``--y``) against steps, samples or wall seconds
  (``--x``), one line per ``--by`` value (mean over trials, shaded band), with the closed-form
  expectation dashed beside it where PAPER.md has one (``--theory``).
- ``time-to-target``: wall seconds until ``--y`` first falls to ``--target``, per averaging
  interval H (or per ``--by`` value): the user's real question, how often to average for the
  fastest result on this machine. Bars are means over the trials that got there, dots single
  trials; a group whose trials did not all get there says how many did.
- ``wallclock``: both side by side, the left panel against wall seconds with the target drawn.

The numbers come from ``parsgd.analysis.curves``; this module only draws them.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # a file backend: figures render without a display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from parsgd.analysis.curves import (
    BANDS,
    X_COLUMNS,
    Curve,
    TargetTimes,
    compute_curves,
    compute_target_times,
)
from parsgd.analysis.runs import (
    Run,
    check_column,
    describe_interval,
    describe_value,
    find_runs,
    parse_by,
    varying_keys,
)
from parsgd.engine.rundir import write_atomic
from parsgd.errors import ConfigError

KINDS = ("curves", "time-to-target", "wallclock")
FORMATS = (".png", ".pdf", ".svg")

X_LABELS = {
    "step": "per-worker SGD steps",
    "samples": "samples processed (all workers)",
    "wall_s": "wall-clock seconds (per trial)",
}
Y_LABELS = {
    "loss": "loss f(w̄) of the averaged model",
    "subopt": "suboptimality f(w̄) − f*",
    "dist_opt_sq": "squared distance ‖w̄ − w*‖²",
    "variance": "worker spread (1/M) Σ‖w_m − w̄‖²",
    "gap": "averaging gap: mean worker loss − f(w̄)",
    "loss_workers_mean": "mean loss of the workers' own models",
    "test_loss": "test loss of w̄",
    "test_accuracy": "test accuracy of w̄ (fraction correct)",
    "alignment": "alignment with the top eigenvector",
    "syncs": "averaging rounds so far",
    "samples": "samples processed (all workers)",
    "compute_s": "compute seconds per worker",
    "sync_wait_s": "seconds waiting at barriers per worker",
    "step": "per-worker SGD steps",
    "wall_s": "wall-clock seconds",
}
_BAND_TEXT = {"stderr": "mean ± standard error", "quantile": "mean, 10%-90% of trials"}
_SHORT_LABEL = 45  # characters; longer legend labels go below the axes
_LOG_SPAN = 100.0  # log y when the positive values span more than two decades


def plot_command(
    paths: Sequence[Path],
    output: Path,
    *,
    kind: str = "curves",
    x: str = "step",
    y: str = "loss",
    by: Sequence[str] | None = None,
    band: str = "stderr",
    log: bool = False,
    logx: bool = False,
    theory: bool = False,
    target: float | None = None,
    title: str | None = None,
) -> int:
    """Render one figure of the runs under ``paths`` to ``output``; warnings go to stderr."""
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {output}: the file must end in {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if x not in X_COLUMNS:
        raise ConfigError(f"--x must be one of {', '.join(X_COLUMNS)}; got {x!r}")
    if band not in BANDS:
        raise ConfigError(f"--band must be one of {', '.join(BANDS)}; got {band!r}")
    if kind != "curves" and target is None:
        raise ConfigError(f"--kind {kind} needs --target, e.g. --target 0.15")
    runs = find_runs(paths)
    check_column(runs, y)
    keys = parse_by(by) or varying_keys(runs)
    notes: list[str] = []
    if kind == "curves":
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        curves, notes = compute_curves(runs, x=x, y=y, by=keys, band=band, theory=theory)
        draw_curves(ax, curves, x=x, y=y, band=band, log=log, logx=logx)
        ax.set_title(title or _title(runs, paths, y, X_LABELS[x]), fontsize=10)
    else:
        times = compute_target_times(runs, by=keys, target=float(target or 0), column=y)
        if kind == "time-to-target":
            fig, ax = plt.subplots(figsize=(7.5, 4.8))
            draw_target_times(ax, times, keys=keys, target=float(target or 0), y=y)
        else:
            fig, (left, ax) = plt.subplots(1, 2, figsize=(13, 4.8))
            curves, notes = compute_curves(runs, x="wall_s", y=y, by=keys, band=band)
            # Log time: runs that average every step can take far longer than the rest.
            draw_curves(left, curves, x="wall_s", y=y, band=band, log=log, logx=True)
            left.axhline(float(target or 0), color="0.3", linestyle=":", linewidth=1)
            left.set_title(f"{y} against wall-clock time", fontsize=10)
            draw_target_times(ax, times, keys=keys, target=float(target or 0), y=y)
        what = f"time to reach {y} ≤ {target:g}" if kind == "time-to-target" else ""
        fig.suptitle(title or _title(runs, paths, y, "wall-clock time", what), fontsize=11)
        notes += [f"{t.label}: no trial reached {y} <= {target}" for t in times if not t.reached]
    if theory and kind != "curves":
        notes.append("--theory draws only on --kind curves")
    fig.tight_layout()
    _save(fig, output)
    for note in notes:
        print(f"parsgd: warning: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0


def _title(runs: Sequence[Run], paths: Sequence[Path], y: str, against: str, what: str = "") -> str:
    where = ", ".join(p.resolve().name for p in paths)
    trials = sum(len(r.trials) for r in runs)
    return f"{where}: {what or f'{y} against {against}'} ({len(runs)} runs, {trials} trials)"


def _save(fig: plt.Figure, output: Path) -> None:
    """Render in memory, then replace the file at once: no reader sees half a figure."""
    buffer = io.BytesIO()
    try:
        # bbox "tight" keeps a legend placed below the axes inside the picture.
        fig.savefig(buffer, format=output.suffix.lower().lstrip("."), dpi=150, bbox_inches="tight")
    finally:
        plt.close(fig)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, buffer.getvalue())


def _colour(index: int) -> str:
    return f"C{index % 10}"


def draw_curves(
    ax: Axes,
    curves: Sequence[Curve],
    *,
    x: str,
    y: str,
    band: str,
    log: bool = False,
    logx: bool = False,
) -> None:
    """Measured means (solid), bands (shaded) and closed forms (dashed, same colour)."""
    for i, curve in enumerate(curves):
        colour = _colour(i)
        ax.plot(
            curve.x,
            curve.mean,
            color=colour,
            linewidth=1.8,
            label=f"{curve.label} ({curve.trials} trials)",
        )
        if curve.trials > 1:
            ax.fill_between(curve.x, curve.low, curve.high, color=colour, alpha=0.2, linewidth=0)
        if curve.theory is not None:
            ax.plot(curve.x, curve.theory, color=colour, linestyle="--", linewidth=1.3)
    if log or _spans_decades([c.mean for c in curves]):
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("symlog" if x == "step" else "log")
        first = [c.x[1] for c in curves if len(c.x) > 1]
        if x == "wall_s" and first:  # the grid's 0 has no place on a log axis
            ax.set_xlim(left=min(first))
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(Y_LABELS.get(y, y))
    ax.grid(True, which="major", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if any(c.theory is not None for c in curves):
        handles.append(Line2D([], [], color="0.2", linestyle="--"))
        labels.append("closed form, PAPER.md (dashed)")
    handles.append(Line2D([], [], color="0.6", linewidth=6, alpha=0.4))
    labels.append(_BAND_TEXT[band] + " (band)")
    _legend(ax, handles, labels)


def _legend(ax: Axes, handles: list[Any], labels: list[str]) -> None:
    """Inside the axes while the labels are short, below them when they would cover data."""
    if max((len(label) for label in labels), default=0) <= _SHORT_LABEL:
        ax.legend(handles, labels, fontsize=8, framealpha=0.85)
    else:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def _spans_decades(series: Sequence[np.ndarray]) -> bool:
    values = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.array([])
    if values.size == 0 or values.min() < 0:
        return False
    positive = values[values > 0]
    return positive.size > 1 and positive.max() / positive.min() > _LOG_SPAN


def draw_target_times(
    ax: Axes, times: Sequence[TargetTimes], *, keys: Sequence[str], target: float, y: str
) -> None:
    """Bars: mean seconds to the target per group; dots: trials; text: groups that missed."""
    positions = np.arange(len(times))
    means = [t.mean_s for t in times]
    reached = [m for m in means if m is not None]
    fastest = min(reached) if reached else None
    top = max(
        (max(*t.reached, t.mean_s + t.stderr_s) for t in times if t.mean_s is not None),
        default=1.0,
    )
    rng = np.random.default_rng(0)  # jitter only, so the dots do not sit on one another
    for i, group in enumerate(times):
        total, got = len(group.seconds), len(group.reached)
        mean_s, median_s = group.mean_s, group.median_s
        if mean_s is None or median_s is None:
            ax.text(
                i,
                0.02 * top,
                f"not reached\n(0/{total} trials)",
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.3",
            )
            continue
        ax.bar(i, mean_s, yerr=group.stderr_s, color=_colour(i), alpha=0.75, capsize=4, width=0.6)
        jitter = rng.uniform(-0.15, 0.15, size=got)
        ax.plot(i + jitter, group.reached, "o", color="0.15", markersize=3)
        # The median resists a slow first trial (a cold compile cache) that pulls the mean up.
        ax.plot(i, median_s, "D", color="white", markeredgecolor="0.1", markersize=6)
        notes = [] if got == total else [f"{got}/{total} trials reached"]
        if mean_s == fastest:
            notes.insert(0, "fastest")
        if notes:
            above = max(*group.reached, mean_s + group.stderr_s) + 0.03 * top
            ax.text(i, above, "\n".join(notes), ha="center", va="bottom", fontsize=8)
    if len(keys) <= 2:
        ax.set_xticks(positions, [_tick(keys, t.values) for t in times])
    else:  # long labels: number the bars and explain the numbers in a legend
        ax.set_xticks(positions, [f"({i + 1})" for i in range(len(times))])
        _legend(
            ax,
            [Line2D([], [], color=_colour(i), linewidth=6) for i in range(len(times))],
            [f"({i + 1}) {t.label}" for i, t in enumerate(times)],
        )
    ax.set_ylim(0, top * 1.25)
    ax.set_xlim(-0.6, len(times) - 0.4)
    interval = list(keys) == ["averaging.every"]
    ax.set_xlabel(
        "averaging interval H (per-worker steps between averages)"
        if interval
        else ", ".join(keys) or "runs"
    )
    ax.set_ylabel(f"wall-clock seconds until {y} ≤ {target:g}")
    ax.set_title(
        "bars: mean ± s.e. over the trials that got there; ◇ median; dots: trials", fontsize=10
    )
    ax.grid(True, axis="y", alpha=0.3)


def _tick(keys: Sequence[str], values: tuple[object, ...]) -> str:
    if list(keys) == ["averaging.every"]:
        return describe_interval(values[0])
    return "\n".join(describe_value(k, v, {}) for k, v in zip(keys, values, strict=True))
