"""The typed ``data`` and ``objective`` sections: one frozen dataclass per kind.

``parsgd.config.kinds`` declares each kind's keys, their rules and their defaults; here each
kind gets a dataclass whose fields are exactly those keys, named as in the YAML, so code
downstream reads ``spec.objective.hidden`` and picks behaviour by the kind's class
(``isinstance``, ``match``), never by looking a key up in a mapping. The schema stays the one
source of keys and defaults: ``data_spec`` and ``objective_spec`` pass each class exactly the
schema's keys of its kind (a key on one side only fails there, on every run and in
``tests/test_spec.py``), filling a key missing from the section (a config saved before the key
existed) with the schema's default.

Values are immutable: lists become tuples and ``data.partition`` a ``Partition``, so a spec's
sections can be compared and hashed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, get_args

from parsgd.config.hetero import DEFAULT_PARTITION
from parsgd.config.kinds import DATA_SECTION, OBJECTIVE_SECTION
from parsgd.config.schema import REQUIRED, Section


class Partition(NamedTuple):
    """``data.partition``: which rows each worker samples."""

    kind: str  # shared | shards | dirichlet
    alpha: float | None  # dirichlet only


def _partition(value: Mapping[str, Any]) -> Partition:
    alpha = value.get("alpha")
    return Partition(str(value["kind"]), None if alpha is None else float(alpha))


SHARED = _partition(DEFAULT_PARTITION)  # every worker samples the whole pool


# --- data: where the samples come from -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoData:
    """``data: {kind: none}``: the quadratic makes its own noise."""

    kind: ClassVar[str] = "none"

    @property
    def partition(self) -> Partition:
        """No rows to split: every worker has the whole (absent) pool."""
        return SHARED


@dataclass(frozen=True, slots=True)
class SyntheticData:
    """What every generated pool (or stream) has: ``n`` rows of ``d`` features, drawn from
    ``seed``, or drawn afresh each step (``stream``), split among the workers by
    ``partition``. Not a kind itself: the classes below are."""

    n: int
    d: int
    stream: bool
    seed: int
    partition: Partition


@dataclass(frozen=True, slots=True)
class GaussianLinearData(SyntheticData):
    """Gaussian features, a planted linear model plus Gaussian label noise."""

    kind: ClassVar[str] = "gaussian_linear"
    noise: float


@dataclass(frozen=True, slots=True)
class LogisticPlantedData(SyntheticData):
    """Gaussian features, labels drawn from a planted logistic model."""

    kind: ClassVar[str] = "logistic_planted"
    scale: float


@dataclass(frozen=True, slots=True)
class PcaSpectrumData(SyntheticData):
    """Samples of a covariance with a given spectrum."""

    kind: ClassVar[str] = "pca_spectrum"
    eig_max: float
    eig_min: float
    eigenvalues: tuple[float, ...] | None


@dataclass(frozen=True, slots=True)
class FileData:
    """A data file (npz, npy, csv, svmlight); ``path`` is absolute once resolved."""

    kind: ClassVar[str] = "file"
    path: str
    format: str | None
    label: int | str | None
    header: bool
    n_features: int | None
    test_fraction: float
    standardize: str
    seed: int
    partition: Partition


@dataclass(frozen=True, slots=True)
class BundledData:
    """A data set scikit-learn ships."""

    kind: ClassVar[str] = "bundled"
    name: str
    test_fraction: float
    standardize: str
    seed: int
    partition: Partition


DataSpec = (
    NoData | GaussianLinearData | LogisticPlantedData | PcaSpectrumData | FileData | BundledData
)
# Data read from disk (``SyntheticData``: the generated kinds).
LOADED_DATA = (FileData, BundledData)


# --- objective: the loss ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeastSquaresObjective:
    kind: ClassVar[str] = "least_squares"
    l2: float


@dataclass(frozen=True, slots=True)
class LogisticObjective:
    kind: ClassVar[str] = "logistic"
    l2: float


@dataclass(frozen=True, slots=True)
class HingeObjective:
    kind: ClassVar[str] = "hinge"
    l2: float


@dataclass(frozen=True, slots=True)
class SoftmaxObjective:
    kind: ClassVar[str] = "softmax"
    l2: float


@dataclass(frozen=True, slots=True)
class QuadraticObjective:
    """A noisy quadratic, self-contained (its own dimension and spectrum)."""

    kind: ClassVar[str] = "quadratic"
    d: int
    eig_max: float
    eig_min: float
    eigenvalues: tuple[float, ...] | None
    sigma: float
    beta: float
    zeta: float
    curvature_spread: float

    @property
    def heterogeneous(self) -> bool:
        """The workers' quadratics differ (offset optima or spread curvatures)."""
        return self.zeta > 0.0 or self.curvature_spread > 0.0


@dataclass(frozen=True, slots=True)
class PcaObjective:
    kind: ClassVar[str] = "pca"


@dataclass(frozen=True, slots=True)
class MlpObjective:
    kind: ClassVar[str] = "mlp"
    hidden: int
    l2: float


ObjectiveSpec = (
    LeastSquaresObjective
    | LogisticObjective
    | HingeObjective
    | SoftmaxObjective
    | QuadraticObjective
    | PcaObjective
    | MlpObjective
)
# The linear models: one weight per feature.
LINEAR_OBJECTIVES = (LeastSquaresObjective, LogisticObjective, HingeObjective)


# --- building them from a validated section -------------------------------------------------

# Each kind's class, by the YAML name of the kind: the members of the unions above.
DATA_CLASSES: dict[str, type[DataSpec]] = {cls.kind: cls for cls in get_args(DataSpec)}
OBJECTIVE_CLASSES: dict[str, type[ObjectiveSpec]] = {
    cls.kind: cls for cls in get_args(ObjectiveSpec)
}


def _floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


# Keys whose YAML value is a list or a mapping, made immutable; every other value is a scalar
# the schema has already parsed to its type.
_IMMUTABLE: dict[str, Callable[[Any], Any]] = {"eigenvalues": _floats, "partition": _partition}


def _fields_of(section: Mapping[str, Any], schema: Section) -> dict[str, Any]:
    """The kind's keys from the section, each with the schema's default where it is absent."""
    out = {}
    for name, field in schema.kinds[str(section["kind"])].items():
        if name in section:
            value = section[name]
        elif field.default is REQUIRED:
            raise KeyError(name)
        else:
            value = field.default
        out[name] = _IMMUTABLE[name](value) if name in _IMMUTABLE else value
    return out


def data_spec(section: Mapping[str, Any]) -> DataSpec:
    """The typed ``data`` section of a validated, resolved config."""
    return DATA_CLASSES[str(section["kind"])](**_fields_of(section, DATA_SECTION))


def objective_spec(section: Mapping[str, Any]) -> ObjectiveSpec:
    """The typed ``objective`` section of a validated, resolved config."""
    return OBJECTIVE_CLASSES[str(section["kind"])](**_fields_of(section, OBJECTIVE_SECTION))
