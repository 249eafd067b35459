"""PCA as rank-one factorisation on a pool or a stream (``objective.kind: pca``).

The optimum is sign-ambiguous (``+-sqrt(lambda_1) v_1``), so ``w_opt`` stays None and
``extra_metrics`` fills ``dist_opt_sq`` with the distance to the nearer of the two, and
``alignment`` with ``|<w, v_1>| / ||w||`` (0 at w = 0).
"""

from __future__ import annotations

import numpy as np

from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import pca
from parsgd.problems.steps import StepKernel
from parsgd.rng import normals_from_uniforms, uniforms_per_step_for_normals


class _Pca(Problem):
    top_value: float  # lambda_1 of the second-moment matrix the loss is taken over
    top_vector: np.ndarray  # v_1, unit norm

    def _set_optimum(self, second_moment: np.ndarray) -> None:
        # A random start of norm about sgd.init_scale, whatever d: with N(0, I_d) the shrink
        # factor 1 - step_size ||w||^2 of the first steps would scale with d.
        self.init_std = 1.0 / np.sqrt(self.d)
        values, vectors = np.linalg.eigh(second_moment)
        self.top_value, self.top_vector = float(values[-1]), vectors[:, -1].copy()
        self.f_opt = self.loss(np.sqrt(self.top_value) * self.top_vector)

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        w_star = np.sqrt(self.top_value) * self.top_vector
        dist = min(float((w - w_star) @ (w - w_star)), float((w + w_star) @ (w + w_star)))
        norm = float(np.linalg.norm(w))
        alignment = abs(float(w @ self.top_vector)) / norm if norm > 0 else 0.0
        return {"dist_opt_sq": dist, "alignment": alignment}


class PcaPool(_Pca):
    """``f(w) = 1/(4n) sum_i ||x_i x_i^T - w w^T||_F^2`` on rows of X (dense)."""

    def __init__(self, X: np.ndarray, batch_size: int, test: np.ndarray | None = None) -> None:
        self.X = X
        self.n, self.d = X.shape
        self.batch_size = batch_size
        self.test = test  # held-out rows: their mean loss is the trace's test_loss
        self._set_optimum(X.T @ X / self.n)

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        out = super().extra_metrics(w)
        if self.test is not None:
            total = pca.loss_sum_dense(self.test, w, 0, self.test.shape[0])
            out["test_loss"] = float(total) / self.test.shape[0] + 0.25 * float(w @ w) ** 2
        return out

    @property
    def uniforms_per_step(self) -> int:
        return self.batch_size

    def step_kernel(self) -> StepKernel:
        return StepKernel(steps.PcaPool(self.X))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        lo, hi = shard * self.n // shards, (shard + 1) * self.n // shards
        return float(pca.loss_sum_dense(self.X, w, lo, hi))

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total / self.n + 0.25 * float(w @ w) ** 2

    def loss_partial_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        return float(pca.loss_sum_dense(self.X[rows], w, 0, rows.shape[0]))


class PcaStream(_Pca):
    """Fresh ``x ~ N(0, V diag(eigs) V^T)`` every step; the loss is the population loss
    ``1/4 [(tr S)^2 + 2 tr S^2 - 2 w^T S w + ||w||^4]`` (Gaussian fourth moments)."""

    def __init__(self, eigs: np.ndarray, V: np.ndarray, batch_size: int) -> None:
        self.d = eigs.shape[0]
        self.batch_size = batch_size
        self.mix = np.ascontiguousarray(np.sqrt(eigs)[:, None] * V.T)
        self.second_moment = (V * eigs) @ V.T
        self._constant = float(eigs.sum() ** 2 + 2.0 * (eigs**2).sum())
        self._normals = batch_size * self.d
        self._set_optimum(self.second_moment)

    @property
    def uniforms_per_step(self) -> int:
        return uniforms_per_step_for_normals(self._normals)

    def step_kernel(self) -> StepKernel:
        return StepKernel(steps.PcaStream(self.mix, self.batch_size), self._normals_of)

    def _normals_of(self, uniforms: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(normals_from_uniforms(uniforms, self._normals))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        if shard != 0:
            return 0.0
        quad = float(w @ self.second_moment @ w)
        return 0.25 * (self._constant - 2.0 * quad + float(w @ w) ** 2)

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total
