"""The data and objective kinds: their config keys, and which data goes with which objective.

Declared rules only (``parsgd.config.schema``); ``parsgd.config.load`` puts these two sections
into its ``SCHEMA`` and keeps the cross-field rules. Each kind's keys are also the fields of its
dataclass in ``parsgd.config.kind_specs`` (what the run spec holds): change both together.
"""

from __future__ import annotations

from parsgd.config.hetero import DATA_FIELDS
from parsgd.config.schema import (
    REQUIRED,
    Bool,
    Choice,
    Either,
    Field,
    Float,
    Int,
    ListOf,
    Null,
    Section,
    Str,
)

# How ``data`` and ``objective`` relate. A data kind makes the samples, the objective the
# loss. ``quadratic`` is self-contained (its stochastic gradient is defined by its own
# noise, not by samples), so it takes ``data: {kind: none}``; every other objective needs
# samples. ``pca`` ignores labels; ``logistic`` and ``hinge`` need two classes, ``mlp`` and
# ``softmax`` integer classes (K >= 2): file and bundled data are checked when loaded (DataError).
DATA_KINDS = ("none", "gaussian_linear", "logistic_planted", "pca_spectrum", "file", "bundled")
OBJECTIVE_KINDS = ("least_squares", "logistic", "hinge", "softmax", "quadratic", "pca", "mlp")
DATA_FOR_OBJECTIVE = {
    "least_squares": ("gaussian_linear", "logistic_planted", "file", "bundled"),
    "logistic": ("logistic_planted", "file", "bundled"),
    "hinge": ("logistic_planted", "file", "bundled"),
    "quadratic": ("none",),
    "pca": ("pca_spectrum", "file", "bundled"),
    "mlp": ("logistic_planted", "file", "bundled"),
    "softmax": ("logistic_planted", "file", "bundled"),
}
# Objectives that need a pool of samples: no ``data.stream``.
POOL_ONLY_OBJECTIVES = ("mlp", "softmax")
# Objectives whose default start is a shared random point: at zero pca sits on a saddle
# (its gradient is exactly zero there) and an mlp's hidden units stay identical.
RANDOM_START_OBJECTIVES = ("pca", "mlp")
FILE_FORMATS = ("npz", "npy", "csv", "svmlight")
BUNDLED_NAMES = ("breast_cancer", "diabetes", "digits", "iris", "wine")
STANDARDIZE = ("none", "scale", "center_scale")
_STANDARDIZE_HELP = "per-feature scaling fitted on the training part (sparse data: scale only)"
_DATA_SEED = Field(Either((Int(low=0, high=2**63 - 1), Null())), None, "null: the run's seed")
_L2 = Field(Float(low=0.0), 0.0, "L2 penalty l2/2 ||w||^2")
# A spectrum: ``eigenvalues`` listed (length d), or d values from eig_max down to eig_min,
# evenly spaced on a log scale.
_SPECTRUM = {
    "eig_max": Field(Float(low=0.0, low_open=True), 1.0, "largest eigenvalue"),
    "eig_min": Field(Float(low=0.0, low_open=True), 0.1, "smallest eigenvalue"),
    "eigenvalues": Field(
        Either((ListOf(Float(low=0.0, low_open=True)), Null())), None, "overrides eig_max/min"
    ),
}


def _test_fraction(default: float) -> Field:
    return Field(Float(low=0.0, high=0.9), default, "held-out share, reported as test_* columns")


DATA_SECTION = Section(
    fields={"kind": Field(Choice(DATA_KINDS), "gaussian_linear")},
    kinds={
        "none": {},
        "gaussian_linear": {
            "n": Field(Int(low=1, high=2**40), 10000, "samples in the pool"),
            "d": Field(Int(low=1, high=2**24), 10, "features"),
            "noise": Field(Float(low=0.0), 0.1, "standard deviation of the label noise"),
            "stream": Field(Bool(), False, "draw a fresh sample every step"),
            "seed": _DATA_SEED,
        },
        "logistic_planted": {
            "n": Field(Int(low=1, high=2**40), 10000, "samples in the pool"),
            "d": Field(Int(low=1, high=2**24), 10, "features"),
            "scale": Field(Float(low=0.0), 2.0, "norm of the planted model (signal strength)"),
            "stream": Field(Bool(), False, "draw a fresh sample every step (not for mlp)"),
            "seed": _DATA_SEED,
        },
        "pca_spectrum": {
            "n": Field(Int(low=1, high=2**40), 10000, "samples in the pool"),
            "d": Field(Int(low=1, high=4096), 10, "features"),
            **_SPECTRUM,
            "stream": Field(Bool(), False, "draw a fresh sample every step"),
            "seed": _DATA_SEED,
        },
        "file": {
            "path": Field(Str(), REQUIRED, "data file; relative to the config's directory"),
            "format": Field(
                Either((Choice(FILE_FORMATS), Null())), None, "null: from the file suffix"
            ),
            "label": Field(
                Either((Int(), Str(), Null())),
                -1,
                "csv/npy label column (index or csv header name); null: no labels",
            ),
            "header": Field(Bool(), True, "csv: the first line names the columns"),
            "n_features": Field(Either((Int(low=1), Null())), None, "svmlight width"),
            "test_fraction": _test_fraction(0.0),
            "standardize": Field(Choice(STANDARDIZE), "none", _STANDARDIZE_HELP),
            "seed": _DATA_SEED,
        },
        "bundled": {
            "name": Field(Choice(BUNDLED_NAMES), REQUIRED, "a data set scikit-learn ships"),
            "test_fraction": _test_fraction(0.2),
            "standardize": Field(Choice(STANDARDIZE), "center_scale", _STANDARDIZE_HELP),
            "seed": _DATA_SEED,
        },
    },
    default_kind="gaussian_linear",
)
# Every kind with rows takes a partition; ``none`` (the quadratic) has no rows to split.
for _kind, _fields in DATA_SECTION.kinds.items():
    if _kind != "none":
        _fields.update(DATA_FIELDS)

OBJECTIVE_SECTION = Section(
    fields={"kind": Field(Choice(OBJECTIVE_KINDS), "least_squares")},
    kinds={
        "least_squares": {"l2": _L2},
        "logistic": {"l2": _L2},
        "hinge": {"l2": _L2},
        "softmax": {"l2": _L2},
        "quadratic": {
            "d": Field(Int(low=1, high=256), 10, "dimension"),
            **_SPECTRUM,
            "sigma": Field(Float(low=0.0), 1.0, "additive noise: sigma * xi"),
            "beta": Field(Float(low=0.0), 0.0, "multiplicative noise: sqrt(beta) * Z (w - w*)"),
            # Heterogeneous workers (parsgd.problems.quadratic.worker_quadratics); both 0:
            # every worker has the one quadratic.
            "zeta": Field(
                Float(low=0.0), 0.0, "offset scale: worker m's optimum c_m = w* + zeta v_m"
            ),
            "curvature_spread": Field(
                Float(low=0.0, high=1.0, high_open=True),
                0.0,
                "worker m's curvatures: each eigenvalue times a uniform factor in 1 +- spread",
            ),
        },
        "pca": {},
        "mlp": {
            "hidden": Field(Int(low=1, high=65536), 16, "hidden units (tanh)"),
            "l2": _L2,
        },
    },
    default_kind="least_squares",
)
