"""``parsgd report DIR``: a table of final figures per sweep, best configuration marked.

One row per run directory (or per ``--by`` value, runs pooled), one table per sweep (the
directory holding the runs). Final figures are means over trials of each trial's last trace
row; wall seconds and throughput come from run.json; the time to a target loss (``--target``)
is read from the trace's ``wall_s``, averaged over the trials that got there. The best row
has the lowest final loss, or with ``--target`` the most trials at the target, then the
shortest time. Printed as plain text, written as ``report.md`` and ``report.csv`` in DIR.
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

from parsgd.analysis.runs import Run, final_rows, find_runs, group_runs, parse_by, time_to_target
from parsgd.engine.rundir import write_atomic
from parsgd.errors import ConfigError

# (heading, key of ReportRow.cells): the columns of every table, in order.
COLUMNS = (
    ("run", "run"),
    ("status", "status"),
    ("trials", "trials"),
    ("loss", "loss"),
    ("subopt", "subopt"),
    ("dist_opt_sq", "dist_opt_sq"),
    ("variance", "variance"),
    ("syncs", "syncs"),
    ("samples", "samples"),
    ("wall_s", "wall_s"),
    ("updates_per_s", "updates_per_s"),
    ("time_to_target_s", "time_to_target_s"),
    ("time_to_target_median_s", "time_to_target_median_s"),
    ("reached", "reached"),
    ("best", "best"),
)
_FINAL = ("loss", "subopt", "dist_opt_sq", "variance", "syncs", "samples")


@dataclass
class ReportRow:
    """One line of a table: a run directory, or the runs sharing one ``--by`` value."""

    sweep: str
    cells: dict[str, Any]


def build_report(
    directory: Path, *, by: Sequence[str] | None = None, target: float | None = None
) -> list[ReportRow]:
    """The rows of every table, sweeps in name order, best rows marked."""
    runs = find_runs([directory])
    keys = parse_by(by)
    sweeps: dict[str, list[Run]] = {}
    for run in runs:
        sweeps.setdefault(_sweep_name(directory, run), []).append(run)
    rows: list[ReportRow] = []
    for sweep in sorted(sweeps):
        members = sorted(sweeps[sweep], key=lambda r: r.directory.name)
        if keys:
            table = [
                _row(sweep, group.label, group.runs, target) for group in group_runs(members, keys)
            ]
        else:
            table = [_row(sweep, run.directory.name, [run], target) for run in members]
        _mark_best(table, target)
        rows += table
    return rows


def _sweep_name(root: Path, run: Run) -> str:
    parent = run.directory.parent
    resolved = root.resolve()
    if run.directory == resolved or parent == resolved:
        return resolved.name
    return str(parent.relative_to(resolved))


def _row(sweep: str, name: str, runs: Sequence[Run], target: float | None) -> ReportRow:
    trials = [t for run in runs for t in run.trials]
    final = final_rows(trials)
    cells: dict[str, Any] = {"run": name, "trials": len(trials)}
    statuses = sorted({str(run.record.get("status", "unknown")) for run in runs})
    cells["status"] = "/".join(statuses)
    for column in _FINAL:
        cells[column] = _mean(final.get(column, np.array([])))
    for column in ("syncs", "samples"):  # counts: whole numbers unless trials differ
        value = cells[column]
        if value is not None and value.is_integer():
            cells[column] = int(value)
    cells["wall_s"] = _mean_of(run.record.get("timings", {}).get("total_s") for run in runs)
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


def _mark_best(table: list[ReportRow], target: float | None) -> None:
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


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_text(rows: Sequence[ReportRow], target: float | None) -> str:
    """Plain-text tables, one per sweep, columns aligned."""
    out = []
    for sweep, table in _by_sweep(rows).items():
        header = [h for h, _ in _columns(target)]
        body = [[_text(row.cells[k]) for _, k in _columns(target)] for row in table]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        head = "  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))
        out.append(f"== {sweep} ==\n{head.rstrip()}\n" + "\n".join(x.rstrip() for x in lines))
    return "\n\n".join(out) + "\n" + _legend(target)


def format_markdown(rows: Sequence[ReportRow], target: float | None) -> str:
    out = ["# parsgd report\n"]
    for sweep, table in _by_sweep(rows).items():
        header = [h for h, _ in _columns(target)]
        out.append(f"## {sweep}\n")
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join(" --- " for _ in header) + "|")
        for row in table:
            out.append("| " + " | ".join(_text(row.cells[k]) for _, k in _columns(target)) + " |")
        out.append("")
    out.append(_legend(target))
    return "\n".join(out)


def format_csv(rows: Sequence[ReportRow]) -> str:
    """Every column, every sweep, full precision; empty cells where a figure is unknown."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sweep", *(h for h, _ in COLUMNS)])
    for row in rows:
        cells = ["" if row.cells[k] is None else row.cells[k] for _, k in COLUMNS]
        writer.writerow([row.sweep, *(repr(c) if isinstance(c, float) else c for c in cells)])
    return buffer.getvalue()


def _columns(target: float | None) -> list[tuple[str, str]]:
    """Columns of the printed and markdown tables (the CSV always has them all)."""
    if target is None:
        timed = ("time_to_target_s", "time_to_target_median_s", "reached")
        return [(h, k) for h, k in COLUMNS if k not in timed]
    names = {
        "time_to_target_s": f"t(loss<={target:g})_s",
        "time_to_target_median_s": "t_median_s",
    }
    return [(names.get(k, h), k) for h, k in COLUMNS]


def _legend(target: float | None) -> str:
    best = (
        f"most trials reaching loss <= {target:g}, then fastest"
        if target is not None
        else "lowest final loss"
    )
    return (
        "Final figures: mean over trials of each trial's last trace row. wall_s: run.json "
        "timings.total_s; updates_per_s: samples per second of compute. "
        f"t: mean (and median) wall seconds to the target over the trials that reached it. "
        f"best (*): {best}.\n"
    )


def _by_sweep(rows: Sequence[ReportRow]) -> dict[str, list[ReportRow]]:
    tables: dict[str, list[ReportRow]] = {}
    for row in rows:
        tables.setdefault(row.sweep, []).append(row)
    return tables


def report_command(
    directory: Path, *, by: Sequence[str] | None = None, target: float | None = None
) -> int:
    """Print the tables and write report.md and report.csv into ``directory``."""
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory of runs")
    rows = build_report(directory, by=by, target=target)
    print(format_text(rows, target), end="")
    write_atomic(directory / "report.md", format_markdown(rows, target).encode())
    write_atomic(directory / "report.csv", format_csv(rows).encode())
    print(f"wrote {directory / 'report.md'} and {directory / 'report.csv'}")
    return 0
