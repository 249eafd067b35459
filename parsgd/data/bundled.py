"""The small data sets scikit-learn ships inside its package, by name (no download)."""

from __future__ import annotations

import numpy as np

from parsgd.data.table import Table


def load_bundled(name: str) -> Table:
    """``breast_cancer``, ``diabetes``, ``digits``, ``iris`` or ``wine`` as a dense table."""
    from sklearn import datasets

    loader = getattr(datasets, f"load_{name}")
    X, y = loader(return_X_y=True)
    return Table(
        np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), f"bundled data {name}"
    )
