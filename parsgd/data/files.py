"""Data files: ``.npz``/``.npy``, CSV and LIBSVM/svmlight text, read into a ``Table``.

svmlight goes through scikit-learn's ``load_svmlight_file`` (a well-kept, compiled parser)
and stays sparse. CSV is read row by row with the standard library so that a ragged row or a
field that is not a number is reported with its line. Every failure is a one-line DataError
naming the file and the line, row or field.
"""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.config.kind_specs import FileData
from parsgd.data.table import Table
from parsgd.errors import DataError

_SUFFIXES = {
    ".npz": "npz",
    ".npy": "npy",
    ".csv": "csv",
    ".svm": "svmlight",
    ".svmlight": "svmlight",
    ".libsvm": "svmlight",
}


def load_file(data: FileData) -> Table:
    """Read ``data.path`` in ``data.format`` (or the format its suffix names)."""
    path = Path(data.path)
    fmt = data.format or _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
            "set data.format to npz, npy, csv or svmlight"
        )
    if not path.is_file():
        if path.is_symlink():
            raise DataError(f"data file {path} is a symlink that leads nowhere (a loop?)")
        raise DataError(f"data file {path} not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        if fmt == "svmlight":
            return _load_svmlight(path, data.n_features)
        if fmt == "csv":
            return _load_csv(path, data.label, data.header)
        if fmt == "npy":
            return _split_label(_load_npy(path), data.label, str(path))
        return _load_npz(path)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None


def _load_svmlight(path: Path, n_features: int | None) -> Table:
    from sklearn.datasets import load_svmlight_file

    try:
        X, y = load_svmlight_file(str(path), n_features=n_features, dtype=np.float64)
    except OverflowError:
        line = _first_line_with_index_over(path, 2**31 - 1)
        raise DataError(
            f"{path}{f':{line}' if line else ''}: a feature index of 2^31 or more; "
            "svmlight indices must be below 2147483648"
        ) from None
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else "not svmlight text"
        if n_features is not None and "n_features" in message:
            raise DataError(
                f"{path}: dimension mismatch: {message} (data.n_features is {n_features})"
            ) from None
        line = _first_malformed_line(path)
        raise DataError(f"{path}{f':{line}' if line else ''}: {message}") from None
    X = X.tocsr()
    bad = np.flatnonzero(~np.isfinite(X.data))
    rows = np.searchsorted(X.indptr, bad, side="right") - 1
    rows = np.union1d(rows, np.flatnonzero(~np.isfinite(y)))
    if len(rows):
        line = _line_of_row(path, int(rows.min()))
        raise DataError(f"{path}:{line}: a NaN or infinite value; remove or impute it")
    return Table(X, np.asarray(y, dtype=np.float64), str(path))


def _data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without comment) of every svmlight line that holds a row."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.split(b"#", 1)[0].decode(errors="replace").strip()
            if text:
                yield number, text


def _line_of_row(path: Path, row: int) -> int:
    for index, (number, _) in enumerate(_data_lines(path)):
        if index == row:
            return number
    return 0


def _first_malformed_line(path: Path) -> int | None:
    """Only to name the line in an error after scikit-learn's parser refused the file."""
    for number, text in _data_lines(path):
        label, *pairs = text.split()
        try:
            float(label)
            for pair in pairs:
                key, value = pair.split(":")
                if key != "qid":
                    int(key)
                float(value)
        except ValueError:
            return number
    return None


def _first_line_with_index_over(path: Path, limit: int) -> int | None:
    for number, text in _data_lines(path):
        for pair in text.split()[1:]:
            key = pair.split(":", 1)[0]
            if key.isdigit() and int(key) > limit:
                return number
    return None


def _check_real(path: Path, field: str, array: np.ndarray) -> None:
    """Refuse complex numbers (casting would silently drop the imaginary part) and text."""
    if np.iscomplexobj(array):
        raise DataError(f"{path}: {field} holds complex numbers; parsgd needs real ones")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DataError(f"{path}: {field} must be numeric; got values of type {array.dtype}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric .npy array ({exc})") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            f"{path}: expected a 2-D numeric array (rows x columns); got shape {array.shape} "
            f"of {array.dtype}"
        )
    _check_real(path, "the array", array)
    return array.astype(np.float64)


def _load_npz(path: Path) -> Table:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "X" not in archive.files:
                raise DataError(
                    f"{path}: field X (the features) is missing; found {', '.join(archive.files)}"
                )
            X, y = archive["X"], archive["y"] if "y" in archive.files else None
    except (ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise DataError(f"{path}: field X must be a 2-D numeric array; got shape {X.shape}")
    _check_real(path, "field X", X)
    if y is not None and y.ndim != 1:
        raise DataError(f"{path}: field y must be 1-D; got shape {y.shape}")
    if y is not None:
        _check_real(path, "field y (the labels)", y)
    labels = None if y is None else y.astype(np.float64)
    return Table(X.astype(np.float64), labels, str(path))


def _split_label(array: np.ndarray, label: int | str | None, source: str) -> Table:
    if label is None:
        return Table(array, None, source)
    if not isinstance(label, int) or not -array.shape[1] <= label < array.shape[1]:
        raise DataError(
            f"{source}: data.label must be a column index in [-{array.shape[1]}, "
            f"{array.shape[1] - 1}]; got {label!r}"
        )
    column = label % array.shape[1]
    return Table(np.delete(array, column, axis=1), array[:, column].copy(), source)


def _load_csv(path: Path, label: int | str | None, header: bool) -> Table:
    rows: list[list[float]] = []
    names: list[str] | None = None
    width = None
    with path.open(newline="") as handle:
        for line_number, fields in _csv_rows(path, handle):
            if not fields or all(not f.strip() for f in fields):
                continue  # blank line
            if header and names is None:
                names = [f.strip() for f in fields]
                width = len(names)
                continue
            if width is None:
                width = len(fields)
            if len(fields) != width:
                raise DataError(
                    f"{path}:{line_number}: ragged row: {len(fields)} fields, expected {width}"
                )
            rows.append([_number(path, line_number, names, j, f) for j, f in enumerate(fields)])
    if not rows:
        raise DataError(f"{path}: no data rows")
    column = label
    if isinstance(label, str):
        if names is None or label not in names:
            known = f"columns are {', '.join(names)}" if names else "the file has no header"
            raise DataError(f"{path}: data.label {label!r} is not a column name ({known})")
        column = names.index(label)
    table = _split_label(np.array(rows), column, str(path))
    table.row_word = "data row"
    return table


def _csv_rows(path: Path, handle: Any) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of every CSV record; bad text is a DataError naming the line."""
    reader = csv.reader(handle)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(f"{path}:{reader.line_num}: not CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            line = _bad_utf8_line(path)
            raise DataError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
        yield reader.line_num, fields


def _bad_utf8_line(path: Path) -> int:
    """The line of the first byte that is not UTF-8 (decoding reads ahead, so the reader's
    own line count is no guide)."""
    data = path.read_bytes()
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        return data[: exc.start].count(b"\n") + 1
    return 0


def _number(path: Path, line: int, names: list[str] | None, column: int, text: str) -> float:
    where = f"column {names[column]!r}" if names else f"column {column + 1}"
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}:{line}, {where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}:{line}, {where}: {text.strip()} is not a finite number")
    return value
