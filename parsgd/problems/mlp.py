"""The one-hidden-layer network on a labelled pool (``objective.kind: mlp``)."""

from __future__ import annotations

import numpy as np

from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import mlp
from parsgd.problems.steps import StepKernel


class MlpPool(Problem):
    """Softmax classifier with a tanh hidden layer; non-convex, so no optimum is reported.

    Random starts use ``mlp.init_std`` (1/sqrt(fan-in) for weights, 0 for biases) times
    ``sgd.init_scale``. ``init: zeros`` is the all-zero symmetric saddle (see ``mlp``).
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        classes: int,
        hidden: int,
        l2: float,
        batch_size: int,
        test: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.X, self.y, self.classes, self.hidden, self.l2 = X, y, classes, hidden, l2
        self.n, p = X.shape
        self.d = mlp.n_params(p, hidden, classes)
        self.init_std = mlp.init_std(p, hidden, classes)
        self.batch_size = batch_size
        self.test = test

    @property
    def uniforms_per_step(self) -> int:
        return self.batch_size

    def step_kernel(self) -> StepKernel:
        return StepKernel(steps.Mlp(self.X, self.y, self.l2, self.hidden, self.classes))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        lo, hi = shard * self.n // shards, (shard + 1) * self.n // shards
        return float(mlp.evaluate(self.X, self.y, w, lo, hi, self.hidden, self.classes)[0])

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total / self.n + 0.5 * self.l2 * float(w @ w)

    def class_labels(self) -> np.ndarray | None:
        return self.y

    def loss_partial_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        X, y = self.X[rows], self.y[rows]
        return float(mlp.evaluate(X, y, w, 0, rows.shape[0], self.hidden, self.classes)[0])

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        if self.test is None:
            return {}
        X, y = self.test
        total, correct = mlp.evaluate(X, y, w, 0, len(y), self.hidden, self.classes)
        return {"test_loss": float(total) / len(y), "test_accuracy": correct / len(y)}
