"""``parsgd plot``: figures of finished runs, written to PNG, PDF or SVG (no display needed).

Three kinds of figure:

- ``curves`` (default): a trace column (``--y``) against steps, samples or wall seconds
  (``--x``), one line per ``--by`` value (mean over trials, shaded band), with the closed-form
  expectation dashed beside it where PAPER.md has one (``--theory``).
- ``time-to-target``: wall seconds until the trace first meets ``--target``
  (``test_accuracy>=0.95``, ``loss<=0.1``, or a value of ``--y`` with the direction inferred;
  ``parsgd.analysis.targets``), per averaging interval H (or per ``--by`` value): the user's
  real question, how often to average for the fastest result on this machine. Bars are
  means over the trials that got there, dots single trials; a group whose trials did not all
  get there says how many did, and one where none did says "never reached".
- ``wallclock``: both side by side, the left panel against wall seconds with the target drawn.
- ``final``: the final value of ``--y`` (mean over trials, standard-error bars) against a
  swept config key ``--x`` (default ``averaging.every``, one-shot at H = steps), one line per
  ``--by`` value, the closed form dashed with ``--theory`` (``parsgd.analysis.finals``).

``--facet KEY`` draws one panel per value of KEY; styles, legends and titles follow
``parsgd.analysis.figure_style``. The numbers come from ``parsgd.analysis.curves``; this
module only draws them.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path

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
    compute_curves,
    compute_paired_curves,
    compute_target_times,
)
from parsgd.analysis.figure_style import (
    curve_style,
    figure_legend,
    legend_below,
    legend_outside,
    short_title,
)
from parsgd.analysis.final_lines import draw_finals
from parsgd.analysis.finals import compute_finals
from parsgd.analysis.network import Network, parse_network, project_runs
from parsgd.analysis.paired import parse_reference
from parsgd.analysis.runs import (
    Run,
    check_column,
    describe_values,
    find_runs,
    group_runs,
    parse_by,
    varying_keys,
)
from parsgd.analysis.target_bars import draw_target_times
from parsgd.analysis.targets import parse_target
from parsgd.engine.rundir import write_atomic
from parsgd.errors import ConfigError

KINDS = ("curves", "time-to-target", "wallclock", "final")
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
_BAND_TEXT = {
    "stderr": "mean ± standard error",
    "quantile": "mean, 10%-90% of trials",
    "paired": "95% CI of the paired difference over trials",
}
_LOG_SPAN = 100.0  # log y when the positive values span more than two decades


def plot_command(
    paths: Sequence[Path],
    output: Path,
    *,
    kind: str = "curves",
    x: str | None = None,
    y: str | None = None,
    by: Sequence[str] | None = None,
    band: str = "stderr",
    log: bool = False,
    logx: bool = False,
    theory: bool = False,
    target: str | float | None = None,
    title: str | None = None,
    facet: str | None = None,
    ylim: str | None = None,
    log_time: bool = False,
    paired_with: str | None = None,
    network: str | None = None,
) -> int:
    """Render one figure of the runs under ``paths`` to ``output``; warnings go to stderr."""
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"-o {output}: the file must end in {', '.join(FORMATS)}")
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "final":
        others = {"--target": target, "--facet": facet, "--paired-with": paired_with,
                  "--network": network}  # fmt: skip
        given = [flag for flag, value in others.items() if value is not None]
        if given:
            raise ConfigError(f"--kind final takes no {given[0]}")
        return _final_figure(paths, output, x or "averaging.every", y or "loss", by, log, logx,
                             theory, title, limits=_parse_ylim(ylim))  # fmt: skip
    x = x or "step"
    if x not in X_COLUMNS:
        raise ConfigError(f"--x must be one of {', '.join(X_COLUMNS)}; got {x!r}")
    if band not in BANDS:
        raise ConfigError(f"--band must be one of {', '.join(BANDS)}; got {band!r}")
    if kind != "curves" and target is None:
        raise ConfigError(f"--kind {kind} needs --target, e.g. --target 0.15")
    if facet is not None and kind != "curves":
        raise ConfigError("--facet draws small multiples of --kind curves only")
    goal = None if target is None else parse_target(target, y or "loss")
    if goal is not None and y is not None and goal.column != y:
        raise ConfigError(f"--y {y} and --target {goal.text} name different columns; name one")
    column = goal.column if goal is not None else y or "loss"
    limits = _parse_ylim(ylim)
    projection = None if network is None else parse_network(network)
    if projection is not None and kind == "curves" and x != "wall_s":
        raise ConfigError("--network projects wall-clock time: use --kind wallclock, "
                          "--kind time-to-target or --x wall_s")  # fmt: skip
    runs = find_runs(paths)
    check_column(runs, column)
    if projection is not None:
        runs = project_runs(runs, projection)
    keys = parse_by(by) or varying_keys(runs)
    notes: list[str] = []
    if paired_with is not None:
        if kind != "curves" or facet is not None or theory:
            raise ConfigError("--paired-with draws --kind curves only, without --facet or --theory")
        reference = parse_reference(paired_with)
        fig, ax = plt.subplots(figsize=(9.0, 4.8))
        curves = compute_paired_curves(runs, x=x, y=column, by=keys, reference=reference)
        ax.axhline(0.0, color="0.2", linewidth=1.2, label=f"reference: {reference.text}")
        draw_curves(ax, curves, x=x, y=column, band="paired", log=False, logx=logx)
        ax.set_ylabel(f"{column} minus the same trial's at {reference.text}")
        _set_ylim(ax, limits)
        what = f"{column} paired with {reference.text}"
        ax.set_title(title or short_title(paths, what, keys), fontsize=10)
    elif kind == "curves":
        if facet is not None:
            fig, notes = _faceted(runs, facet, [k for k in keys if k != facet], column, x, band,
                                  log, logx, theory, limits)  # fmt: skip
            fig.suptitle(title or short_title(paths, _what(column, x), keys), fontsize=11)
        else:
            fig, ax = plt.subplots(figsize=(9.0, 4.8))
            curves, notes = compute_curves(runs, x=x, y=column, by=keys, band=band, theory=theory)
            draw_curves(ax, curves, x=x, y=column, band=band, log=log, logx=logx)
            _set_ylim(ax, limits)
            ax.set_title(title or short_title(paths, _what(column, x), keys), fontsize=10)
    else:
        assert goal is not None
        times = compute_target_times(runs, by=keys, target=goal)
        if kind == "time-to-target":
            fig, ax = plt.subplots(figsize=(9.0, 4.8))
            draw_target_times(ax, times, keys=keys, target=goal, log=log or log_time)
        else:
            fig, (left, ax) = plt.subplots(1, 2, figsize=(13, 4.8))
            curves, notes = compute_curves(runs, x="wall_s", y=column, by=keys, band=band)
            # Log time: runs that average every step can take far longer than the rest.
            draw_curves(left, curves, x="wall_s", y=column, band=band, log=log, logx=True,
                        legend=False)  # fmt: skip
            handles, labels = left.get_legend_handles_labels()
            legend_below(fig, handles, labels)
            _set_ylim(left, limits)
            left.axhline(goal.value, color="0.3", linestyle=":", linewidth=1)
            left.set_title(f"{column} against wall-clock time (dotted: the target)", fontsize=10)
            draw_target_times(ax, times, keys=keys, target=goal, log=log_time)
        fig.suptitle(title or short_title(paths, f"time to {goal.text}", keys), fontsize=11)
        notes += [f"{t.label}: no trial reached {goal.text}" for t in times if not t.reached]
    if theory and kind != "curves":
        notes.append("--theory draws only on --kind curves and final")
    if projection is not None:
        _label_projection(fig, projection)
    fig.tight_layout()
    _save(fig, output)
    for note in notes:
        print(f"parsgd: warning: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0


def _final_figure(
    paths: Sequence[Path], output: Path, x_key: str, y: str, by: Sequence[str] | None,
    log: bool, logx: bool, theory: bool, title: str | None,
    limits: tuple[float | None, float | None] | None,
) -> int:  # fmt: skip
    """``--kind final``: the last recorded ``y`` of every trial against config key ``x_key``."""
    runs = find_runs(paths)
    check_column(runs, y)
    keys = [k for k in (parse_by(by) or varying_keys(runs)) if k != x_key]
    series, notes = compute_finals(runs, x_key=x_key, y=y, by=keys, theory=theory)
    fig, ax = plt.subplots(figsize=(9.0, 4.8))
    xlabel = "averaging interval H (steps)" if x_key == "averaging.every" else x_key
    draw_finals(ax, series, xlabel=xlabel, ylabel=f"final {Y_LABELS.get(y, y)}", log=log,
                logx=logx)  # fmt: skip
    _set_ylim(ax, limits)
    what = f"final {y} against {x_key}"
    ax.set_title(title or short_title(paths, what, keys), fontsize=10)
    fig.tight_layout()
    _save(fig, output)
    for note in notes:
        print(f"parsgd: warning: {note}", file=sys.stderr)
    print(f"wrote {output}")
    return 0


def _label_projection(fig: plt.Figure, network: Network) -> None:
    """Say on every panel that its seconds are projected, not measured, and from what."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            label = axis.get_label().get_text()
            if "seconds" in label:
                axis.set_label_text(f"projected {label}")
        ax.text(
            0.01, 0.99, f"projection: {network.text}\nmeasured compute + syncs x ring all-reduce",
            transform=ax.transAxes, ha="left", va="top", fontsize=7, color="0.25",
            bbox={"boxstyle": "round", "facecolor": "lightyellow", "alpha": 0.8, "linewidth": 0.5},
        )  # fmt: skip
    fig.suptitle(f"PROJECTION onto {network.text}. {fig.get_suptitle()}", fontsize=10)


def _what(y: str, x: str) -> str:
    return f"{y} against {x}"


def _parse_ylim(text: str | None) -> tuple[float | None, float | None] | None:
    """``--ylim LOW,HIGH`` (either may be left empty: ``0.9,``)."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (float(p) if p.strip() else None for p in parts)
    except ValueError:
        raise ConfigError(f"--ylim must be LOW,HIGH (e.g. 0.9,1 or 0.9,); got {text!r}") from None
    if low is not None and high is not None and not low < high:
        raise ConfigError(f"--ylim: LOW must be below HIGH; got {text!r}")
    return low, high


def _set_ylim(ax: Axes, limits: tuple[float | None, float | None] | None) -> None:
    if limits is not None:
        ax.set_ylim(bottom=limits[0], top=limits[1])


def _faceted(
    runs: Sequence[Run],
    facet: str,
    keys: list[str],
    y: str,
    x: str,
    band: str,
    log: bool,
    logx: bool,
    theory: bool,
    limits: tuple[float | None, float | None] | None,
) -> tuple[plt.Figure, list[str]]:
    """One panel per value of ``facet``, the same curve in the same style in every panel."""
    panels = group_runs(runs, [facet])
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(4.6 * columns, 3.6 * rows), squeeze=False, sharey=True
    )
    notes: list[str] = []
    styles: dict[str, int] = {}
    drawn = []
    for panel, ax in zip(panels, axes.flat, strict=False):
        curves, more = compute_curves(panel.runs, x=x, y=y, by=keys, band=band, theory=theory)
        notes += more
        for curve in curves:
            styles.setdefault(curve.label, len(styles))
        draw_curves(ax, curves, x=x, y=y, band=band, log=log, logx=logx, styles=styles,
                    legend=False)  # fmt: skip
        ax.set_title(describe_values([facet], panel.values[:1], panel.runs[0].spec), fontsize=9)
        _set_ylim(ax, limits)
        drawn.append(ax)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = drawn[-1].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in drawn[:-1]:
        more_handles, more_labels = ax.get_legend_handles_labels()
        for label, handle in zip(more_labels, more_handles, strict=True):
            seen.setdefault(label, handle)
    figure_legend(fig, list(seen.values()), list(seen))
    return fig, notes


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


def draw_curves(
    ax: Axes,
    curves: Sequence[Curve],
    *,
    x: str,
    y: str,
    band: str,
    log: bool = False,
    logx: bool = False,
    styles: dict[str, int] | None = None,
    legend: bool = True,
) -> None:
    """Measured means (solid, then other line styles past ten curves), bands (shaded) and
    closed forms (dashed, same colour). ``styles`` maps a label to its style index, so
    panels of one figure agree."""
    for i, curve in enumerate(curves):
        style = curve_style(styles.get(curve.label, i) if styles else i)
        ax.plot(
            curve.x, curve.mean, linewidth=1.8, label=f"{curve.label} ({curve.trials} trials)",
            **style,
        )  # fmt: skip
        if curve.trials > 1:
            ax.fill_between(
                curve.x, curve.low, curve.high, color=style["color"], alpha=0.2, linewidth=0
            )
        if curve.theory is not None:
            ax.plot(curve.x, curve.theory, color=style["color"], linestyle="--", linewidth=1.3)
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
    if legend:
        legend_outside(ax, handles, labels)


def _spans_decades(series: Sequence[np.ndarray]) -> bool:
    values = np.concatenate([s[np.isfinite(s)] for s in series]) if series else np.array([])
    if values.size == 0 or values.min() < 0:
        return False
    positive = values[values > 0]
    return positive.size > 1 and positive.max() / positive.min() > _LOG_SPAN
