"""The registry: ``objective.kind`` -> a builder that makes or loads the data and the Problem.

Builders run before the results directory exists (see ``parsgd.engine.runner``), so every
DataError they raise leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from parsgd.config.load import Config
from parsgd.data.sources import Split, load_split
from parsgd.data.sparse import publish_csr, publish_dense
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
from parsgd.problems.quadratic import Quadratic
from parsgd.problems.softmax import SoftmaxPool

_LABELS = {"least_squares": "real", "logistic": "binary", "hinge": "binary"}


def build_problem(config: Config, arena: Arena) -> Problem:
    """Generate or load the data into ``arena`` and pair it with the objective."""
    return _BUILDERS[config["objective"]["kind"]](config, arena)


def _build_linear(config: Config, arena: Arena) -> Problem:
    data, objective = config["data"], config["objective"]
    kind, l2, batch = objective["kind"], objective["l2"], config["sgd"]["batch_size"]
    if data["kind"] == "gaussian_linear":
        if data["stream"]:
            w_true = planted_weights(data["d"], data["seed"])
            return GaussianStream(w_true, data["noise"], l2, batch)
        _check_memory(data["n"] * (data["d"] + 1) * 8)
        X, y, _ = gaussian_linear(data["n"], data["d"], data["noise"], data["seed"], arena)
        return LinearPool(X, y, kind, l2, batch)
    if data["kind"] == "logistic_planted":
        if data["stream"]:
            w_true = data["scale"] * planted_weights(data["d"], data["seed"])
            return PlantedStream(w_true, kind, l2, batch)
        _check_memory(data["n"] * (data["d"] + 1) * 8)
        X, y, _ = logistic_planted(data["n"], data["d"], data["scale"], data["seed"], arena)
        return LinearPool(X, y, kind, l2, batch)
    loaded = _load(config, _LABELS[kind])
    X = _publish(loaded.train.X, arena)
    y = publish_dense(np.asarray(loaded.train.y, dtype=np.float64), arena)
    return LinearPool(X, y, kind, l2, batch, _held_out(loaded))


def _build_quadratic(config: Config, arena: Arena) -> Problem:
    objective = config["objective"]
    d = objective["d"]
    eigs = spectrum(d, objective["eig_max"], objective["eig_min"], objective["eigenvalues"])
    w_opt = planted_weights(d, config["seed"])
    return Quadratic(
        eigs, w_opt, objective["sigma"], objective["beta"], config["sgd"]["batch_size"]
    )


def _build_pca(config: Config, arena: Arena) -> Problem:
    data, batch = config["data"], config["sgd"]["batch_size"]
    if data["kind"] == "pca_spectrum":
        eigs = spectrum(data["d"], data["eig_max"], data["eig_min"], data["eigenvalues"])
        if data["stream"]:
            return PcaStream(eigs, random_rotation(data["d"], data["seed"]), batch)
        _check_memory(data["n"] * data["d"] * 8)
        X, _ = pca_spectrum(data["n"], eigs, data["seed"], arena)
        return PcaPool(X, batch)
    loaded = _load(config, None)
    test = None if loaded.test is None else _dense(loaded.test.X, config, None)
    return PcaPool(_dense(loaded.train.X, config, arena), batch, test)


def _build_mlp(config: Config, arena: Arena) -> Problem:
    data, objective = config["data"], config["objective"]
    batch = config["sgd"]["batch_size"]
    if data["kind"] == "logistic_planted":
        _check_memory(data["n"] * (data["d"] + 1) * 8)
        X, y, _ = logistic_planted(data["n"], data["d"], data["scale"], data["seed"], arena)
        labels = arena.empty((data["n"],), np.int64)
        labels[:] = (y > 0).astype(np.int64)
        return MlpPool(X, labels, 2, objective["hidden"], objective["l2"], batch)
    loaded = _load(config, "classes")
    X = _dense(loaded.train.X, config, arena)
    labels = arena.empty((loaded.train.n,), np.int64)
    labels[:] = loaded.train.y
    test = None
    if loaded.test is not None:
        test = (_dense(loaded.test.X, config, None), np.asarray(loaded.test.y, np.int64))
    return MlpPool(X, labels, loaded.classes, objective["hidden"], objective["l2"], batch, test)


def _build_softmax(config: Config, arena: Arena) -> Problem:
    data, objective = config["data"], config["objective"]
    batch, l2 = config["sgd"]["batch_size"], objective["l2"]
    if data["kind"] == "logistic_planted":  # two classes, 0/1
        _check_memory(data["n"] * (data["d"] + 1) * 8)
        X, y, _ = logistic_planted(data["n"], data["d"], data["scale"], data["seed"], arena)
        labels = arena.empty((data["n"],), np.int64)
        labels[:] = (y > 0).astype(np.int64)
        return SoftmaxPool(X, labels, 2, l2, batch)
    loaded = _load(config, "classes")
    labels = arena.empty((loaded.train.n,), np.int64)
    labels[:] = loaded.train.y
    held_out = _held_out(loaded)
    test = None if held_out is None else (held_out[0], held_out[1].astype(np.int64))
    return SoftmaxPool(_publish(loaded.train.X, arena), labels, loaded.classes, l2, batch, test)


_BUILDERS: dict[str, Callable[[Config, Arena], Problem]] = {
    "least_squares": _build_linear,
    "logistic": _build_linear,
    "hinge": _build_linear,
    "quadratic": _build_quadratic,
    "pca": _build_pca,
    "mlp": _build_mlp,
    "softmax": _build_softmax,
}


def _load(config: Config, labels: str | None) -> Split:
    loaded = load_split(config["data"], config["objective"]["kind"], labels)
    if loaded.train.n < config["sgd"]["batch_size"]:
        raise DataError(
            f"{loaded.train.source}: sgd.batch_size ({config['sgd']['batch_size']}) is larger "
            f"than the {loaded.train.n} training rows"
        )
    return loaded


def _publish(X: Any, arena: Arena) -> Any:
    return publish_csr(X, arena) if sp.issparse(X) else publish_dense(X, arena)


def _dense(X: Any, config: Config, arena: Arena | None) -> np.ndarray:
    """Dense features for objectives without a sparse kernel (pca, mlp), if they fit."""
    if sp.issparse(X):
        what = f"objective {config['objective']['kind']} has no sparse kernel: the dense copy"
        _check_memory(X.shape[0] * X.shape[1] * 8, what=what)
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=np.float64) if arena is None else publish_dense(X, arena)


def _held_out(loaded: Split) -> tuple[Any, np.ndarray] | None:
    if loaded.test is None:
        return None
    X = loaded.test.X
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.ascontiguousarray(X)
    return X, np.asarray(loaded.test.y, dtype=np.float64)


def _check_memory(nbytes: int, what: str = "data.n x data.d") -> None:
    import psutil

    if nbytes > psutil.virtual_memory().available * 0.8:
        raise DataError(
            f"{what} needs {nbytes / 2**30:.1f} GiB, more than the memory available; "
            "use a smaller data set or data.stream: true"
        )
