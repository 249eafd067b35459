"""The registry: the objective's kind -> a builder that makes or loads the data and the Problem.

Builders run before the results directory exists (see ``parsgd.engine.runner``), so every
DataError they raise leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from parsgd.config.kind_specs import (
    LOADED_DATA,
    GaussianLinearData,
    HingeObjective,
    LeastSquaresObjective,
    LogisticObjective,
    LogisticPlantedData,
    MlpObjective,
    PcaObjective,
    PcaSpectrumData,
    QuadraticObjective,
    SoftmaxObjective,
)
from parsgd.config.spec import RunSpec
from parsgd.data.sources import Split, load_split
from parsgd.data.sparse import is_sparse, publish_csr, publish_dense
from parsgd.data.synthetic import (
    Arena,
    gaussian_linear,
    logistic_planted,
    pca_spectrum,
    planted_weights,
    random_rotation,
    spectrum,
)
from parsgd.errors import DataError
from parsgd.problems.base import Problem
from parsgd.problems.linear import GaussianStream, LinearPool
from parsgd.problems.mlp import MlpPool
from parsgd.problems.pca import PcaPool, PcaStream
from parsgd.problems.planted import PlantedStream
from parsgd.problems.quadratic import Quadratic, worker_quadratics
from parsgd.problems.softmax import SoftmaxPool

_LABELS = {"least_squares": "real", "logistic": "binary", "hinge": "binary"}
LinearObjective = LeastSquaresObjective | LogisticObjective | HingeObjective


def build_problem(spec: RunSpec, arena: Arena) -> Problem:
    """Generate or load the data into ``arena`` and pair it with the objective.

    The objective's class picks the builder; each reads its data kind's own fields.
    """
    objective = spec.objective
    match objective:
        case LeastSquaresObjective() | LogisticObjective() | HingeObjective():
            return _build_linear(spec, objective, arena)
        case QuadraticObjective():
            return _build_quadratic(spec, objective)
        case PcaObjective():
            return _build_pca(spec, arena)
        case MlpObjective():
            return _build_mlp(spec, objective, arena)
        case SoftmaxObjective():
            return _build_softmax(spec, objective, arena)


def _build_linear(spec: RunSpec, objective: LinearObjective, arena: Arena) -> Problem:
    data, kind, l2, batch = spec.data, objective.kind, objective.l2, spec.sgd.batch_size
    if isinstance(data, GaussianLinearData):
        if data.stream:
            return GaussianStream(planted_weights(data.d, data.seed), data.noise, l2, batch)
        _check_memory(data.n * (data.d + 1) * 8)
        X, y, _ = gaussian_linear(data.n, data.d, data.noise, data.seed, arena)
        return LinearPool(X, y, kind, l2, batch)
    if isinstance(data, LogisticPlantedData):
        if data.stream:
            w_true = data.scale * planted_weights(data.d, data.seed)
            return PlantedStream(w_true, kind, l2, batch)
        _check_memory(data.n * (data.d + 1) * 8)
        X, y, _ = logistic_planted(data.n, data.d, data.scale, data.seed, arena)
        return LinearPool(X, y, kind, l2, batch)
    loaded = _load(spec, _LABELS[kind])
    X = _publish(loaded.train.X, arena)
    y = publish_dense(np.asarray(loaded.train.y, dtype=np.float64), arena)
    return LinearPool(X, y, kind, l2, batch, _held_out(loaded))


def _build_quadratic(spec: RunSpec, objective: QuadraticObjective) -> Problem:
    q = objective
    eigs = spectrum(q.d, q.eig_max, q.eig_min, q.eigenvalues)
    center = planted_weights(q.d, spec.seed)
    # Every worker's own quadratic, numbered over all nodes (each node builds all of them).
    workers = worker_quadratics(eigs, center, q.zeta, q.curvature_spread, spec.ranks, spec.seed)
    return Quadratic(eigs, center, q.sigma, q.beta, spec.sgd.batch_size, workers)


def _build_pca(spec: RunSpec, arena: Arena) -> Problem:
    data, batch = spec.data, spec.sgd.batch_size
    if isinstance(data, PcaSpectrumData):
        eigs = spectrum(data.d, data.eig_max, data.eig_min, data.eigenvalues)
        if data.stream:
            return PcaStream(eigs, random_rotation(data.d, data.seed), batch)
        _check_memory(data.n * data.d * 8)
        X, _ = pca_spectrum(data.n, eigs, data.seed, arena)
        return PcaPool(X, batch)
    loaded = _load(spec, None)
    test = None if loaded.test is None else _dense(loaded.test.X, spec, None)
    return PcaPool(_dense(loaded.train.X, spec, arena), batch, test)


def _planted_classes(data: LogisticPlantedData, arena: Arena) -> tuple[np.ndarray, np.ndarray]:
    """A planted logistic pool with its labels as two classes, 0/1."""
    _check_memory(data.n * (data.d + 1) * 8)
    X, y, _ = logistic_planted(data.n, data.d, data.scale, data.seed, arena)
    labels = arena.empty((data.n,), np.int64)
    labels[:] = (y > 0).astype(np.int64)
    return X, labels


def _build_mlp(spec: RunSpec, objective: MlpObjective, arena: Arena) -> Problem:
    data, hidden, l2, batch = spec.data, objective.hidden, objective.l2, spec.sgd.batch_size
    if isinstance(data, LogisticPlantedData):
        X, labels = _planted_classes(data, arena)
        return MlpPool(X, labels, 2, hidden, l2, batch)
    loaded = _load(spec, "classes")
    X = _dense(loaded.train.X, spec, arena)
    labels = arena.empty((loaded.train.n,), np.int64)
    labels[:] = loaded.train.y
    test = None
    if loaded.test is not None:
        test = (_dense(loaded.test.X, spec, None), np.asarray(loaded.test.y, np.int64))
    return MlpPool(X, labels, loaded.classes, hidden, l2, batch, test)


def _build_softmax(spec: RunSpec, objective: SoftmaxObjective, arena: Arena) -> Problem:
    data, l2, batch = spec.data, objective.l2, spec.sgd.batch_size
    if isinstance(data, LogisticPlantedData):
        X, labels = _planted_classes(data, arena)
        return SoftmaxPool(X, labels, 2, l2, batch)
    loaded = _load(spec, "classes")
    labels = arena.empty((loaded.train.n,), np.int64)
    labels[:] = loaded.train.y
    held_out = _held_out(loaded)
    test = None if held_out is None else (held_out[0], held_out[1].astype(np.int64))
    return SoftmaxPool(_publish(loaded.train.X, arena), labels, loaded.classes, l2, batch, test)


def _load(spec: RunSpec, labels: str | None) -> Split:
    data = spec.data
    if not isinstance(data, LOADED_DATA):  # validation pairs every objective with its data
        raise AssertionError(f"objective {spec.objective.kind} cannot use data {data.kind}")
    loaded = load_split(data, spec.objective.kind, labels)
    if loaded.train.n < spec.sgd.batch_size:
        raise DataError(
            f"{loaded.train.source}: sgd.batch_size ({spec.sgd.batch_size}) is larger "
            f"than the {loaded.train.n} training rows"
        )
    return loaded


def _publish(X: Any, arena: Arena) -> Any:
    return publish_csr(X, arena) if is_sparse(X) else publish_dense(X, arena)


def _dense(X: Any, spec: RunSpec, arena: Arena | None) -> np.ndarray:
    """Dense features for objectives without a sparse kernel (pca, mlp), if they fit."""
    if is_sparse(X):
        what = f"objective {spec.objective.kind} has no sparse kernel: the dense copy"
        _check_memory(X.shape[0] * X.shape[1] * 8, what=what)
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=np.float64) if arena is None else publish_dense(X, arena)


def _held_out(loaded: Split) -> tuple[Any, np.ndarray] | None:
    if loaded.test is None:
        return None
    X = loaded.test.X
    X = X.tocsr().astype(np.float64) if is_sparse(X) else np.ascontiguousarray(X)
    return X, np.asarray(loaded.test.y, dtype=np.float64)


def _available_memory() -> int:
    """Bytes of memory available to a new allocation: the kernel's own estimate on Linux
    (what psutil reads too, without psutil's ~20 ms import on every run's start), else
    psutil's."""
    try:
        with open("/proc/meminfo", "rb") as meminfo:
            for line in meminfo:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return int(psutil.virtual_memory().available)


def _check_memory(nbytes: int, what: str = "data.n x data.d") -> None:
    if nbytes > _available_memory() * 0.8:
        raise DataError(
            f"{what} needs {nbytes / 2**30:.1f} GiB, more than the memory available; "
            "use a smaller data set or data.stream: true"
        )
