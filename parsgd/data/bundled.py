"""The small data sets scikit-learn ships inside its package, by name (no download).

The four CSV sets are read from scikit-learn's installed package directory the way its
loaders read them, without importing scikit-learn: that import (scipy.stats, pandas and
more) costs over a second of CPU, half of a small run's start-up. ``diabetes`` (scaled by
scikit-learn's ``scale``), and any set whose file is not where and what it is expected to be,
goes through scikit-learn's own loader. tests/test_optima.py checks that both ways give the
same arrays, bit for bit.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from pathlib import Path

import numpy as np

from parsgd.data.table import Table

# name -> (file in sklearn/datasets/data, rows, columns with the label last). The three plain
# CSV files start with a "rows,features,class names..." line; digits.csv.gz has no header.
_PACKAGE_FILES = {
    "breast_cancer": ("breast_cancer.csv", 569, 31),
    "digits": ("digits.csv.gz", 1797, 65),
    "iris": ("iris.csv", 150, 5),
    "wine": ("wine_data.csv", 178, 14),
}


def load_bundled(name: str) -> Table:
    """``breast_cancer``, ``diabetes``, ``digits``, ``iris`` or ``wine`` as a dense table."""
    arrays = _read_package_file(name)
    if arrays is None:
        arrays = _scikit_learn_loader(name)
    X, y = arrays
    return Table(
        np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), f"bundled data {name}"
    )


def _read_package_file(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(X, y) from scikit-learn's file for ``name``, or None if it is not there as expected."""
    if name not in _PACKAGE_FILES:
        return None
    filename, rows, columns = _PACKAGE_FILES[name]
    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / filename
    try:
        if filename.endswith(".gz"):  # as load_digits: np.loadtxt of the whole file
            with gzip.open(path, "rt") as handle:
                table = np.loadtxt(handle, delimiter=",")
        else:  # as load_csv_data: each row's strings through np.asarray
            with open(path, newline="", encoding="utf-8") as handle:
                lines = csv.reader(handle)
                header = next(lines)
                if [int(header[0]), int(header[1]) + 1] != [rows, columns]:
                    return None
                table = np.array([np.asarray(line, dtype=np.float64) for line in lines])
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    if table.shape != (rows, columns):
        return None
    return table[:, :-1], table[:, -1].astype(int)


def _scikit_learn_loader(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    X, y = loader(return_X_y=True)
    return X, y
