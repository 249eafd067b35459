"""The quadratic with a controlled envelope (``objective.kind: quadratic``); no data set."""

from __future__ import annotations

import math

import numpy as np

from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import quadratic
from parsgd.problems.steps import StepKernel
from parsgd.rng import normals_from_uniforms, uniforms_per_step_for_normals


class Quadratic(Problem):
    """``f(w) = 1/2 (w - w*)^T diag(eigs) (w - w*)``, ``f* = 0``; noise as in
    ``parsgd.problems.kernels.quadratic`` (closed-form expectations in
    ``parsgd.analysis.theory``)."""

    def __init__(
        self, eigs: np.ndarray, w_opt: np.ndarray, sigma: float, beta: float, batch_size: int
    ) -> None:
        self.eigs, self.sigma, self.beta = eigs, sigma, beta
        self.d = eigs.shape[0]
        self.batch_size = batch_size
        self._normals = batch_size * quadratic.normals_per_sample(self.d, beta)
        self.w_opt, self.f_opt = w_opt, 0.0
        self.center = w_opt  # the kernel's w* (w_opt is typed Optional on Problem)

    @property
    def uniforms_per_step(self) -> int:
        return uniforms_per_step_for_normals(self._normals)

    def step_kernel(self) -> StepKernel:
        data = steps.Quadratic(
            self.eigs, self.center, math.sqrt(self.beta), self.sigma, self.batch_size
        )
        return StepKernel(data, self._normals_of)

    def _normals_of(self, uniforms: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(normals_from_uniforms(uniforms, self._normals))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        if shard != 0:
            return 0.0
        e = w - self.center
        return 0.5 * float(e @ (self.eigs * e))

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total
