"""A problem is a data source and an objective, ready for the engine.

The engine needs four things from it: run SGD steps on one model from given uniforms, the
loss of a model (split into shards so M workers can share an evaluation, summed in a fixed
order), the optimum where it is known, and how many uniforms one step consumes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from parsgd.config import Config
from parsgd.data.synthetic import Arena, gaussian_linear, planted_weights
from parsgd.errors import DataError
from parsgd.objectives import least_squares
from parsgd.rng import normals_from_uniforms, uniforms_per_step_for_normals


class Problem(ABC):
    d: int
    batch_size: int
    w_opt: np.ndarray | None = None
    f_opt: float | None = None

    @property
    @abstractmethod
    def uniforms_per_step(self) -> int:
        """How many uniforms in [0, 1) one SGD step of one worker consumes."""

    @abstractmethod
    def sgd(self, w: np.ndarray, uniforms: np.ndarray, etas: np.ndarray) -> None:
        """Run ``len(etas)`` steps on ``w`` in place; ``uniforms`` has one row per step."""

    @abstractmethod
    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        """This shard's contribution to the loss; ``finish_loss`` turns the sum into f(w)."""

    @abstractmethod
    def finish_loss(self, total: float, w: np.ndarray) -> float:
        """f(w) from the sum of all shards' partials (taken in shard order)."""

    def loss(self, w: np.ndarray) -> float:
        return self.finish_loss(self.loss_partial(w, 0, 1), w)

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        """Problem-specific trace columns for the averaged model (see EXTRA_COLUMNS)."""
        return {}


class LeastSquaresPool(Problem):
    """Least squares on a finite pool (X, y) held in the arena."""

    def __init__(self, X: np.ndarray, y: np.ndarray, l2: float, batch_size: int) -> None:
        self.X, self.y, self.l2 = X, y, l2
        self.n, self.d = X.shape
        self.batch_size = batch_size
        self.w_opt, self.f_opt = self._optimum()

    @property
    def uniforms_per_step(self) -> int:
        return self.batch_size

    def sgd(self, w: np.ndarray, uniforms: np.ndarray, etas: np.ndarray) -> None:
        least_squares.sgd_dense(self.X, self.y, w, uniforms, etas, self.l2)

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        lo, hi = shard * self.n // shards, (shard + 1) * self.n // shards
        return float(least_squares.loss_sum_dense(self.X, self.y, w, lo, hi))

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total / self.n + 0.5 * self.l2 * float(w @ w)

    def _optimum(self) -> tuple[np.ndarray | None, float | None]:
        """Solve the normal equations of the finite pool exactly (in float64)."""
        gram = self.X.T @ self.X / self.n + self.l2 * np.eye(self.d)
        try:
            w_opt = np.linalg.solve(gram, self.X.T @ self.y / self.n)
        except np.linalg.LinAlgError:
            return None, None  # singular (n < d, no l2): the optimum is not unique
        return w_opt, self.loss(w_opt)


class GaussianStream(Problem):
    """Least squares on fresh samples ``x ~ N(0, I)``, ``y = x^T w_true + noise * eps``.

    Every step draws new data, so the closed forms of PAPER.md (iii) hold exactly and the
    loss is the population loss ``1/2 (||w - w_true||^2 + noise^2) + l2/2 ||w||^2``.
    """

    def __init__(self, w_true: np.ndarray, noise: float, l2: float, batch_size: int) -> None:
        self.w_true, self.noise, self.l2 = w_true, noise, l2
        self.d = w_true.shape[0]
        self.batch_size = batch_size
        self._normals = batch_size * (self.d + 1)
        self.w_opt = w_true / (1.0 + l2)
        self.f_opt = self.loss(self.w_opt)

    @property
    def uniforms_per_step(self) -> int:
        return uniforms_per_step_for_normals(self._normals)

    def sgd(self, w: np.ndarray, uniforms: np.ndarray, etas: np.ndarray) -> None:
        z = normals_from_uniforms(uniforms, self._normals)
        least_squares.sgd_stream(self.w_true, self.noise, w, z, etas, self.l2, self.batch_size)

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        if shard != 0:
            return 0.0
        diff = w - self.w_true
        return 0.5 * (float(diff @ diff) + self.noise**2)

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total + 0.5 * self.l2 * float(w @ w)


def build_problem(config: Config, arena: Arena) -> Problem:
    """Generate or load the data into ``arena`` and pair it with the objective."""
    data, objective = config["data"], config["objective"]
    batch = config["sgd"]["batch_size"]
    if data["kind"] != "gaussian_linear" or objective["kind"] != "least_squares":
        raise DataError(
            f"data.kind {data['kind']} with objective.kind {objective['kind']} is not supported"
        )
    if data["stream"]:
        w_true = planted_weights(data["d"], data["seed"])
        return GaussianStream(w_true, data["noise"], objective["l2"], batch)
    nbytes = data["n"] * (data["d"] + 1) * 8
    if nbytes > _memory_budget_bytes():
        raise DataError(
            f"data.n x data.d needs {nbytes / 2**30:.1f} GiB, more than the memory available; "
            "lower data.n or data.d, or use data.stream: true"
        )
    X, y, _ = gaussian_linear(data["n"], data["d"], data["noise"], data["seed"], arena)
    return LeastSquaresPool(X, y, objective["l2"], batch)


def _memory_budget_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available * 0.8)
