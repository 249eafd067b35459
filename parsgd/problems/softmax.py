"""Softmax (multinomial logistic) regression on a labelled pool, dense or CSR
(``objective.kind: softmax``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from parsgd.data.sparse import CSR, is_sparse, take_rows
from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import softmax
from parsgd.problems.optima import softmax_optimum
from parsgd.problems.steps import StepKernel

Features = np.ndarray | CSR


class SoftmaxPool(Problem):
    """``f(W) = 1/n sum_i -log softmax(W x_i)[y_i] + l2/2 ||W||^2`` for K classes.

    ``y`` holds class ids 0..K-1 (int64). The model is the flat K x p weight matrix. For
    ``l2 > 0`` the optimum is solved before the run (cached), so ``subopt`` and
    ``dist_opt_sq`` are traced. ``test`` is a held-out (X, y), X dense or a scipy CSR
    matrix: its mean cross-entropy (no L2) and accuracy go into the trace.
    """

    def __init__(
        self,
        X: Features,
        y: np.ndarray,
        classes: int,
        l2: float,
        batch_size: int,
        test: tuple[Any, np.ndarray] | None = None,
    ) -> None:
        self.X, self.y, self.classes, self.l2 = X, y, classes, l2
        self.n, self.p = X.shape
        self.d = classes * self.p
        self.batch_size = batch_size
        self.test = test
        scipy_or_dense = X.to_scipy() if isinstance(X, CSR) else X
        w_opt = softmax_optimum(scipy_or_dense, y, classes, l2)
        if w_opt is not None:
            self.w_opt, self.f_opt = w_opt, self.loss(w_opt)

    @property
    def uniforms_per_step(self) -> int:
        return self.batch_size

    def step_kernel(self) -> StepKernel:
        X = self.X
        if isinstance(X, CSR):
            csr = steps.SoftmaxCsr(
                X.data, X.indices, X.indptr, self.p, self.y, self.l2, self.classes
            )
            return StepKernel(csr)
        return StepKernel(steps.SoftmaxDense(X, self.y, self.l2, self.classes))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        lo, hi = shard * self.n // shards, (shard + 1) * self.n // shards
        return _evaluate(self.X, self.y, w, lo, hi, self.classes)[0]

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total / self.n + 0.5 * self.l2 * float(w @ w)

    def class_labels(self) -> np.ndarray | None:
        return self.y

    def loss_partial_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        X = take_rows(self.X, rows)
        return _evaluate(X, self.y[rows], w, 0, rows.shape[0], self.classes)[0]

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        if self.test is None:
            return {}
        X, y = self.test
        features: Features = CSR(X.data, X.indices, X.indptr, X.shape) if is_sparse(X) else X
        total, correct = _evaluate(features, y, w, 0, len(y), self.classes)
        return {"test_loss": total / len(y), "test_accuracy": correct / len(y)}


def _evaluate(
    X: Features, y: np.ndarray, w: np.ndarray, lo: int, hi: int, classes: int
) -> tuple[float, int]:
    if isinstance(X, CSR):
        total, correct = softmax.evaluate_csr(
            X.data, X.indices, X.indptr, X.shape[1], y, w, lo, hi, classes
        )
    else:
        total, correct = softmax.evaluate_dense(X, y, w, lo, hi, classes)
    return float(total), int(correct)
