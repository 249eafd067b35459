"""Linear models on a pool (dense or CSR): least squares, logistic, hinge; and least squares
on a Gaussian stream."""

from __future__ import annotations

from typing import Any

import numpy as np

from parsgd.data.sparse import CSR, is_sparse, take_rows
from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import linear
from parsgd.problems.optima import linear_optimum
from parsgd.problems.steps import StepKernel
from parsgd.rng import normals_from_uniforms, uniforms_per_step_for_normals

Features = np.ndarray | CSR


class LinearPool(Problem):
    """``f(w) = 1/n sum_i loss(x_i^T w, y_i) + l2/2 ||w||^2`` on (X, y) held in the arena.

    ``test`` is a held-out (X, y), X a dense array or a scipy CSR matrix, whose mean loss
    (no L2 term) and, for classifiers, accuracy go into the trace.
    """

    def __init__(
        self,
        X: Features,
        y: np.ndarray,
        objective: str,
        l2: float,
        batch_size: int,
        test: tuple[Any, np.ndarray] | None = None,
    ) -> None:
        self.X, self.y, self.l2, self.objective = X, y, l2, objective
        self.code = linear.CODES[objective]
        self.n, self.d = X.shape
        self.batch_size = batch_size
        self.test = test
        self.classifier = objective != "least_squares"
        w_opt = linear_optimum(self.scipy_or_dense(), y, objective, l2)
        if w_opt is not None:
            self.w_opt, self.f_opt = w_opt, self.loss(w_opt)

    def scipy_or_dense(self) -> Any:
        return self.X.to_scipy() if isinstance(self.X, CSR) else self.X

    @property
    def uniforms_per_step(self) -> int:
        return self.batch_size

    def step_kernel(self) -> StepKernel:
        X = self.X
        if isinstance(X, CSR):
            csr = steps.CsrLinear(X.data, X.indices, X.indptr, self.y, self.l2, self.code)
            return StepKernel(csr)
        return StepKernel(steps.DenseLinear(X, self.y, self.l2, self.code))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        lo, hi = shard * self.n // shards, (shard + 1) * self.n // shards
        return float(_loss_sum(self.X, self.y, w, lo, hi, self.code))

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total / self.n + 0.5 * self.l2 * float(w @ w)

    def class_labels(self) -> np.ndarray | None:
        return self.y if self.classifier else None

    def loss_partial_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        X = take_rows(self.X, rows)
        return float(_loss_sum(X, self.y[rows], w, 0, rows.shape[0], self.code))

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        if self.test is None:
            return {}
        X, y = self.test
        features: Features = CSR(X.data, X.indices, X.indptr, X.shape) if is_sparse(X) else X
        out: dict[str, float | None] = {
            "test_loss": float(_loss_sum(features, y, w, 0, len(y), self.code)) / len(y)
        }
        if self.classifier:
            predicted = np.where(np.asarray(X @ w) >= 0.0, 1.0, -1.0)
            out["test_accuracy"] = float(np.mean(predicted == y))
        return out


def _loss_sum(X: Features, y: np.ndarray, w: np.ndarray, lo: int, hi: int, code: int) -> float:
    if isinstance(X, CSR):
        return float(linear.loss_sum_csr(X.data, X.indices, X.indptr, y, w, lo, hi, code))
    return float(linear.loss_sum_dense(X, y, w, lo, hi, code))


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

    def step_kernel(self) -> StepKernel:
        data = steps.GaussianStream(self.w_true, self.noise, self.l2, self.batch_size)
        return StepKernel(data, self._normals_of)

    def _normals_of(self, uniforms: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(normals_from_uniforms(uniforms, self._normals))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        if shard != 0:
            return 0.0
        diff = w - self.w_true
        return 0.5 * (float(diff @ diff) + self.noise**2)

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total + 0.5 * self.l2 * float(w @ w)
