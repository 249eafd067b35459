"""``parsgd report DIR``: a table of final figures per sweep, best configuration marked.

One row per run directory (or per ``--by`` value, runs pooled), one table per sweep (the
directory holding the runs), rows in the order of the swept values (numbers ascending,
``end`` after them; ``parsgd.analysis.runs.value_order``). Final figures are means over
trials of each trial's last trace row; wall seconds and throughput come from run.json; the
time to a target (``--target test_accuracy>=0.95``, ``parsgd.analysis.targets``) is read from
the trace's ``wall_s``, averaged over the trials that got there. ``--columns`` picks the
columns; by default the usual ones plus ``test_loss``/``test_accuracy``/``alignment``
wherever a run has them. The best row has the lowest final loss, or with ``--target`` the
most trials at the target, then the shortest time. Printed as plain text, written as
``report.md`` and ``report.csv`` in DIR.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.analysis.network import Network, parse_network, project_runs
from parsgd.analysis.paired import (
    Reference,
    ci95,
    final_differences,
    parse_reference,
    split_runs,
    welch_ci95,
)
from parsgd.analysis.runs import (
    Run,
    check_column,
    final_rows,
    find_runs,
    group_runs,
    parse_by,
    sort_runs,
    varying_keys,
)
from parsgd.analysis.targets import Target, parse_target, time_to_target
from parsgd.engine.rundir import TRACE_COLUMNS, write_atomic
from parsgd.errors import ConfigError

# Final figures of trace columns shown by default, in order; the optional ones only where
# some run recorded them.
_DEFAULT_FINAL = ("loss", "subopt", "dist_opt_sq", "test_loss", "test_accuracy", "alignment")
_OPTIONAL = frozenset({"test_loss", "test_accuracy", "alignment"})
_DEFAULT_TAIL = ("variance", "syncs", "samples", "wall_s", "updates_per_s")
_FROM_RECORD = ("wall_s", "updates_per_s")  # run.json figures, not trace finals
_PROJECTED = ("projected_s",)
_TIMED = ("time_to_target_s", "time_to_target_median_s", "reached")
_COUNTS = ("syncs", "samples", "step")
_PAIRED = ("paired_diff", "paired_ci95", "unpaired_ci95")
_TRACE = tuple(c for c in TRACE_COLUMNS if c not in ("trial", "wall_s"))


@dataclass
class ReportRow:
    """One line of a table: a run directory, or the runs sharing one ``--by`` value."""

    sweep: str
    cells: dict[str, Any]


@dataclass
class Report:
    """The rows of every table and the columns to show (the CSV adds the rest)."""

    rows: list[ReportRow]
    columns: list[str]
    target: Target | None = None
    reference: Reference | None = None
    metric: str = "loss"  # the figure paired differences are of
    network: Network | None = None  # times are projected onto it


def parse_columns(text: str | None) -> list[str] | None:
    """``--columns a,b`` -> ``[a, b]``, each a trace column or a report figure."""
    if not text:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    allowed = [*_TRACE, *_FROM_RECORD, *_PROJECTED, "status", "trials", *_TIMED, *_PAIRED]
    for name in names:
        if name not in allowed:
            raise ConfigError(
                f"--columns: unknown column {name!r}; choose from {', '.join(allowed)}"
            )
    return names


def build_report(
    directory: Path,
    *,
    by: Sequence[str] | None = None,
    target: str | float | None = None,
    columns: Sequence[str] | None = None,
    paired_with: str | None = None,
    network: str | None = None,
) -> Report:
    """The rows of every table, sweeps in name order, rows in swept-value order, best marked."""
    projection = None if network is None else parse_network(network)
    runs = find_runs([directory])
    if projection is not None:  # wall_s of every row becomes the projected seconds
        runs = project_runs(runs, projection)
    goal = None if target is None else parse_target(target)
    if goal is not None:
        check_column(runs, goal.column)
    keys = parse_by(by)
    sweeps: dict[str, list[Run]] = {}
    for run in runs:
        sweeps.setdefault(_sweep_name(directory, run), []).append(run)
    reference = None if paired_with is None else parse_reference(paired_with)
    metric = goal.column if goal is not None else "loss"
    rows: list[ReportRow] = []
    for sweep in sorted(sweeps):
        members = sweeps[sweep]
        if keys:
            groups = [(g.label, g.runs) for g in group_runs(members, keys)]
        else:
            ordered = sort_runs(members, varying_keys(members) if len(members) > 1 else [])
            groups = [(run.directory.name, [run]) for run in ordered]
        table = [_row(sweep, label, group, goal) for label, group in groups]
        if reference is not None:
            references, _ = split_runs(members, reference)
            for row, (_, group) in zip(table, groups, strict=True):
                _add_paired(row, group, references, reference, metric)
        _mark_best(table, goal)
        rows += table
    shown = list(columns) if columns else _default_columns(rows)
    if goal is not None and columns is None:
        shown += list(_TIMED)
    if reference is not None:
        shown += list(_PAIRED)
    if projection is not None and columns is None:
        shown.insert(shown.index("wall_s") + 1, "projected_s")
    return Report(rows, ["run", *shown, "best"], goal, reference, metric, projection)


def _add_paired(
    row: ReportRow, group: Sequence[Run], references: Sequence[Run], reference: Reference,
    metric: str,
) -> None:  # fmt: skip
    """The row's paired difference from the reference in the final ``metric``, with the
    paired and the unpaired 95% half-widths."""
    others = [run for run in group if not reference.holds(run)]
    if not others:
        row.cells.update(paired_diff="reference", paired_ci95=None, unpaired_ci95=None)
        return
    differences, values, base = final_differences(others, references, reference, metric)
    row.cells["paired_diff"] = _mean(differences)
    row.cells["paired_ci95"] = ci95(differences)
    row.cells["unpaired_ci95"] = welch_ci95(values, base)


def _default_columns(rows: Sequence[ReportRow]) -> list[str]:
    finals = [c for c in _DEFAULT_FINAL if c not in _OPTIONAL or _any_value(rows, c)]
    return ["status", "trials", *finals, *_DEFAULT_TAIL]


def _any_value(rows: Sequence[ReportRow], column: str) -> bool:
    return any(row.cells.get(column) is not None for row in rows)


def _sweep_name(root: Path, run: Run) -> str:
    parent = run.directory.parent
    resolved = root.resolve()
    if run.directory == resolved or parent == resolved:
        return resolved.name
    return str(parent.relative_to(resolved))


def _row(sweep: str, name: str, runs: Sequence[Run], target: Target | None) -> ReportRow:
    trials = [t for run in runs for t in run.trials]
    final = final_rows(trials)
    cells: dict[str, Any] = {"run": name, "trials": len(trials)}
    statuses = sorted({str(run.record.get("status", "unknown")) for run in runs})
    cells["status"] = "/".join(statuses)
    for column in _TRACE:
        cells[column] = _mean(final.get(column, np.array([])))
    for column in _COUNTS:  # counts: whole numbers unless trials differ
        value = cells[column]
        if value is not None and value.is_integer():
            cells[column] = int(value)
    cells["wall_s"] = _mean_of(run.record.get("timings", {}).get("total_s") for run in runs)
    cells["projected_s"] = _mean(final.get("wall_s", np.array([])))  # per trial, projected
    cells["updates_per_s"] = _mean_of(run.record.get("updates_per_s") for run in runs)
    cells["time_to_target_s"] = cells["time_to_target_median_s"] = cells["reached"] = None
    if target is not None:
        times = [time_to_target(trial, target) for trial in trials]
        got = [t for t in times if t is not None]
        cells["time_to_target_s"] = float(np.mean(got)) if got else None
        cells["time_to_target_median_s"] = float(np.median(got)) if got else None
        cells["reached"] = f"{len(got)}/{len(times)}"
    cells["best"] = ""
    return ReportRow(sweep, cells)


def _mean(values: np.ndarray) -> float | None:
    """None for a column the run leaves empty; NaN or inf stay visible (a diverged trial)."""
    if values.size == 0 or np.isnan(values).all():
        return None
    return float(np.mean(values))


def _mean_of(values: Any) -> float | None:
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return _mean(np.array(numbers)) if numbers else None


def _mark_best(table: list[ReportRow], target: Target | None) -> None:
    def score(row: ReportRow) -> tuple[float, float]:
        cells = row.cells
        if target is None:
            loss = cells["loss"]
            return (0.0, loss if loss is not None and math.isfinite(loss) else math.inf)
        got, total = (int(n) for n in cells["reached"].split("/"))
        seconds = cells["time_to_target_s"]
        return (-got / max(total, 1), math.inf if seconds is None else seconds)

    candidates = [row for row in table if score(row)[1] < math.inf]
    if candidates:
        min(candidates, key=score).cells["best"] = "*"


def _text(key: str, row: ReportRow) -> str:
    value = row.cells.get(key)
    if value is None:
        # A target nobody in the row reached is "never", not a blank that reads as unknown.
        return "never" if key in _TIMED[:2] and row.cells.get("reached") else "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _headings(report: Report) -> list[str]:
    target = report.target
    names = {}
    if target is not None:
        names = {
            "time_to_target_s": ("t_projected" if report.network else "t")
            + f"({target.column}{target.op}{target.value:g})_s",
            "time_to_target_median_s": "t_median_s",
        }
    if report.reference is not None:
        names["paired_diff"] = f"d_{report.metric}(vs {report.reference.text})"
    return [names.get(c, c) for c in report.columns]


def format_text(report: Report) -> str:
    """Plain-text tables, one per sweep, columns aligned."""
    out = []
    for sweep, table in _by_sweep(report.rows).items():
        header = _headings(report)
        body = [[_text(k, row) for k in report.columns] for row in table]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        head = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))
        out.append(f"== {sweep} ==\n{head.rstrip()}\n" + "\n".join(x.rstrip() for x in lines))
    return "\n\n".join(out) + "\n" + _legend(report)


def format_markdown(report: Report) -> str:
    out = ["# parsgd report\n"]
    for sweep, table in _by_sweep(report.rows).items():
        header = _headings(report)
        out.append(f"## {sweep}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(" --- " for _ in header) + "|")
        for row in table:
            out.append("| " + " | ".join(_text(k, row) for k in report.columns) + " |")
        out.append("")
    out.append(_legend(report))
    return "\n".join(out)


def format_csv(report: Report) -> str:
    """The shown columns then every other figure, every sweep, full precision; empty cells
    where a figure is unknown or a target was never reached."""
    rest = ["status", "trials", *_TRACE, *_FROM_RECORD, *_TIMED, *_PAIRED]
    if report.network is not None:
        rest.insert(rest.index("updates_per_s"), "projected_s")
    columns = [*report.columns, *(c for c in rest if c not in report.columns)]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sweep", *columns])
    for row in report.rows:
        cells = ["" if row.cells.get(k) is None else row.cells[k] for k in columns]
        writer.writerow([row.sweep, *(repr(c) if isinstance(c, float) else c for c in cells)])
    return buffer.getvalue()


def _legend(report: Report) -> str:
    target = report.target
    best = (
        f"most trials reaching {target.text}, then fastest"
        if target is not None
        else "lowest final loss"
    )
    timed = (
        f"t: mean (and median) wall seconds to {target.text} over the trials that reached it "
        "(never: no trial did). "
        if target is not None
        else ""
    )
    paired = ""
    if report.reference is not None:
        paired = (
            f"d_{report.metric}: mean over trials of the final {report.metric} minus that of "
            f"the same trial of the {report.reference.text} run (same draws); paired_ci95: its "
            "95% t half-width; unpaired_ci95: the Welch half-width were the trials apart. "
        )
    if report.network is not None:
        paired += (
            f"PROJECTION onto {report.network.text}: t and projected_s are measured compute "
            "seconds plus syncs x the alpha-beta ring all-reduce cost of one round, per trial; "
            "wall_s stays measured. "
        )
    return (
        "Final figures: mean over trials of each trial's last trace row. wall_s: run.json "
        "timings.total_s; updates_per_s: samples per second of compute. "
        f"{timed}{paired}best (*): {best}.\n"
    )


def _by_sweep(rows: Sequence[ReportRow]) -> dict[str, list[ReportRow]]:
    tables: dict[str, list[ReportRow]] = {}
    for row in rows:
        tables.setdefault(row.sweep, []).append(row)
    return tables


def report_command(
    directory: Path,
    *,
    by: Sequence[str] | None = None,
    target: str | None = None,
    columns: str | None = None,
    paired_with: str | None = None,
    network: str | None = None,
) -> int:
    """Print the tables and write report.md and report.csv into ``directory``."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory of runs")
    report = build_report(
        directory,
        by=by,
        target=target,
        columns=parse_columns(columns),
        paired_with=paired_with,
        network=network,
    )
    print(format_text(report), end="")
    write_atomic(directory / "report.md", format_markdown(report).encode())
    write_atomic(directory / "report.csv", format_csv(report).encode())
    print(f"wrote {directory / 'report.md'} and {directory / 'report.csv'}")
    return 0
