"""One tidy table of runs: ``parsgd export DIR -o runs.csv|runs.parquet`` and ``parsgd.load``.

One row per run x trial x recorded step (``finals``: per run x trial, its last row), with
the columns ``run`` (the run directory relative to DIR), ``status`` (run.json), one column
per swept config key (the dotted keys whose values differ between the runs) and every
trace column. A swept column holds numbers where every run's value is a number, else text
(``end``, ``inverse(eta0=0.002, t0=1000)``), so it has one type in pandas and parquet; in
the DataFrame a text column is an ordered categorical in swept order (1, 4, ..., end), so
``groupby`` and plots keep that order.

``export`` and ``load`` build the table in one place (``tidy_table``): the CSV read back
with pandas is the DataFrame ``load`` returns. pandas and pyarrow are the ``analysis``
extra: CSV export needs neither, ``load`` needs pandas, parquet pyarrow.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from parsgd.analysis.runs import (
    Run,
    config_value,
    find_runs,
    sort_runs,
    value_order,
    varying_keys,
)
from parsgd.compact import compact_value
from parsgd.engine.rundir import TRACE_COLUMNS, write_atomic
from parsgd.errors import ConfigError

if TYPE_CHECKING:
    import pandas

FORMATS = (".csv", ".parquet")
# Trace columns that count things: integers in the table (they are never empty).
_INTEGER_COLUMNS = ("trial", "step", "samples", "syncs")
_EXTRA_HINT = "pip install 'parsgd[analysis]'"


def tidy_table(directory: Path, *, finals: bool = False) -> dict[str, list[Any]]:
    """The table as ordered columns of Python values (None where a figure is empty)."""
    return _table_and_order(directory, finals=finals)[0]


def _table_and_order(
    directory: Path, *, finals: bool
) -> tuple[dict[str, list[Any]], dict[str, list[str]]]:
    """The table, and for each swept column held as text its values in swept order."""
    runs = find_runs([directory])
    keys = varying_keys(runs) if len(runs) > 1 else []
    runs = sort_runs(runs, keys)
    root = directory.resolve()
    swept = {key: _swept_column([_value(run, key) for run in runs]) for key in keys}
    table: dict[str, list[Any]] = {"run": [], "status": [], **{k: [] for k in keys}}
    for column in TRACE_COLUMNS:
        table[column] = []
    for index, run in enumerate(runs):
        name = str(run.directory.relative_to(root)) if run.directory != root else root.name
        for trial in run.trials:
            rows = [len(trial["step"]) - 1] if finals else range(len(trial["step"]))
            for row in rows:
                table["run"].append(name)
                table["status"].append(str(run.record.get("status", "unknown")))
                for key in keys:
                    table[key].append(swept[key][index])
                for column in TRACE_COLUMNS:
                    table[column].append(_cell(column, trial.get(column), row))
    order = {}
    for key in keys:
        if any(isinstance(v, str) for v in swept[key]):
            values = sorted((_value(run, key) for run in runs), key=value_order)
            order[key] = list(dict.fromkeys(compact_value(v) for v in values if v is not None))
    return table, order


def _value(run: Run, key: str) -> Any:
    try:
        return config_value(run.config, key)
    except KeyError:
        return None


def _swept_column(values: list[Any]) -> list[Any]:
    numeric = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None
    )
    return values if numeric else [None if v is None else compact_value(v) for v in values]


def _cell(column: str, values: np.ndarray | None, row: int) -> Any:
    if values is None or math.isnan(values[row]):
        return None
    value = float(values[row])
    return int(value) if column in _INTEGER_COLUMNS and math.isfinite(value) else value


def load(directory: str | Path, *, finals: bool = False) -> pandas.DataFrame:
    """The tidy table of the runs under ``directory`` as a pandas DataFrame (see the module
    docstring; ``finals``: one row per run x trial). Needs pandas (the ``analysis`` extra)."""
    try:
        import pandas
    except ImportError:
        raise ConfigError(f"parsgd.load needs pandas: {_EXTRA_HINT}") from None
    table, order = _table_and_order(Path(directory), finals=finals)
    frame = pandas.DataFrame(table)
    for key, categories in order.items():  # text values keep the swept order, not a-z
        frame[key] = pandas.Categorical(frame[key], categories=categories, ordered=True)
    for column in TRACE_COLUMNS:  # float columns stay float even when wholly empty
        if column not in _INTEGER_COLUMNS:
            frame[column] = frame[column].astype("float64")
    return frame


def export_command(directory: Path, output: Path, *, finals: bool = False) -> int:
    """Write the table to ``output`` (``.csv``, or ``.parquet`` with pyarrow), atomically."""
    suffix = output.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"-o {output}: the file must end in {' or '.join(FORMATS)}")
    if not directory.is_dir():
        raise ConfigError(f"{directory} is not a directory of runs")
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError(f"-o {output}: parquet needs pyarrow: {_EXTRA_HINT}") from None
        data = _parquet_bytes(load(directory, finals=finals))
    else:
        data = _csv_text(tidy_table(directory, finals=finals)).encode()
    output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(output, data)
    print(f"wrote {output}")
    return 0


def _csv_text(table: dict[str, list[Any]]) -> str:
    """Full precision (``repr`` of floats), empty cells for empty figures."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table)
    columns: Sequence[list[Any]] = list(table.values())
    for row in zip(*columns, strict=True):
        writer.writerow(["" if v is None else repr(v) if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def _parquet_bytes(frame: pandas.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
