"""File and bundled data, from the ``data`` config section to a training and held-out table."""

from __future__ import annotations

from dataclasses import dataclass

from parsgd.config.kind_specs import BundledData, FileData
from parsgd.data.bundled import load_bundled
from parsgd.data.files import load_file
from parsgd.data.table import (
    Table,
    binary_labels,
    check_table,
    class_labels,
    require_labels,
    split,
    standardize,
)


@dataclass
class Split:
    train: Table
    test: Table | None
    classes: int = 0  # number of classes (labels "classes"), else 0


def load_split(data: FileData | BundledData, objective: str, labels: str | None) -> Split:
    """Load, check, encode labels, split and standardise.

    ``labels``: "real" (any finite number), "binary" (-1/+1), "classes" (0..k-1) or None
    (features only: labels, if any, are dropped).
    """
    table = load_file(data) if isinstance(data, FileData) else load_bundled(data.name)
    check_table(table)
    classes = 0
    if labels is None:
        table.y = None
    elif labels == "binary":
        table.y = binary_labels(table.y, table.source, objective)
    elif labels == "classes":
        codes, classes = class_labels(table.y, table.source, objective)
        table.y = codes
    else:
        table.y = require_labels(table.y, table.source, objective)
    train, test = split(table, data.test_fraction, data.seed)
    train, test = standardize(train, test, data.standardize)
    if labels == "real" and data.standardize == "center_scale":
        # A linear model without intercept needs a centred target as much as centred features.
        assert train.y is not None
        mean, std = float(train.y.mean()), float(train.y.std()) or 1.0
        train.y = (train.y - mean) / std
        if test is not None and test.y is not None:
            test.y = (test.y - mean) / std
    return Split(train, test, classes)
