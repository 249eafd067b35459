"""The quadratic with a controlled envelope (``objective.kind: quadratic``); no data set.

Heterogeneous workers (``objective.zeta``, ``objective.curvature_spread``): worker m
minimises ``f_m(w) = 1/2 (w - c_m)^T A_m (w - c_m)``, the run minimises their mean
(``worker_quadratics``, ``global_optimum``). With both keys 0 (the default) every worker
has the one quadratic, ``c_m = w*`` and ``A_m = diag(eigs)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from parsgd.problems import steps
from parsgd.problems.base import Problem
from parsgd.problems.kernels import quadratic
from parsgd.problems.steps import StepKernel
from parsgd.rng import (
    WORKER_OBJECTIVE_STREAM,
    generator,
    normals_from_uniforms,
    uniforms_per_step_for_normals,
)


@dataclass(frozen=True)
class WorkerQuadratics:
    """Worker m's curvatures ``curvatures[m]`` (``A_m = diag``) and optimum ``centers[m]``,
    (M, d) each, and the optimum ``w_opt`` and value ``f_opt`` of their mean."""

    curvatures: np.ndarray
    centers: np.ndarray
    w_opt: np.ndarray
    f_opt: float


def worker_quadratics(
    eigs: np.ndarray, center: np.ndarray, zeta: float, spread: float, workers: int, seed: int
) -> WorkerQuadratics:
    """Every worker's quadratic, and the optimum of their mean.

    Worker m (numbered globally, 0..M-1 over all nodes) draws from its own generator,
    ``parsgd.rng.generator(seed, WORKER_OBJECTIVE_STREAM, m)``: first d standard normals
    ``v``, then d uniforms ``U`` in [0, 1), and takes

        c_m = center + zeta * v / sqrt(d)          (so E||c_m - center||^2 = zeta^2)
        a_m = eigs * (1 + spread * (2 U - 1))       (each curvature within a factor 1 +- spread)

    So the draws are a pure function of (seed, m): a worker's problem does not depend on the
    backend, on how many workers there are, on zeta or spread (a sweep over zeta moves the
    same directions) or on where a run resumed. With zeta = spread = 0 the rows are exact
    copies of ``center`` and ``eigs`` (x + 0 * v is x, eigs * 1 is eigs), and the optimum is
    ``center`` itself with ``f* = 0``, bit for bit the homogeneous problem.
    """
    d = eigs.shape[0]
    curvatures = np.empty((workers, d))
    centers = np.empty((workers, d))
    for m in range(workers):
        rng = generator(seed, WORKER_OBJECTIVE_STREAM, m)
        offsets = rng.standard_normal(d) / math.sqrt(d)
        uniforms = rng.random(d)
        centers[m] = center + zeta * offsets
        curvatures[m] = eigs * (1.0 + spread * (2.0 * uniforms - 1.0))
    if zeta == 0.0 and spread == 0.0:
        return WorkerQuadratics(curvatures, centers, center.copy(), 0.0)
    w_opt, f_opt = global_optimum(curvatures, centers)
    return WorkerQuadratics(curvatures, centers, w_opt, f_opt)


def global_optimum(curvatures: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, float]:
    """``(w*, f*)`` of the mean objective ``f = mean_m f_m``: ``w* = (mean A_m)^-1
    mean(A_m c_m)`` (coordinate by coordinate: every A_m is diagonal) and
    ``f* = mean_m f_m(w*)``."""
    w_opt = (curvatures * centers).mean(axis=0) / curvatures.mean(axis=0)
    e = w_opt - centers
    f_opt = 0.5 * float((curvatures * e * e).sum(axis=1).mean())
    return w_opt, f_opt


class Quadratic(Problem):
    """``f(w) = 1/2 (w - w*)^T diag(eigs) (w - w*)``, ``f* = 0``; noise as in
    ``parsgd.problems.kernels.quadratic`` (closed-form expectations in
    ``parsgd.analysis.theory`` and ``theory_hetero``).

    With ``workers`` (``worker_quadratics``), rank m steps on its own ``f_m`` and the loss is
    their mean, ``f(w) = 1/2 (w - w*)^T mean(A_m) (w - w*) + f*`` (a quadratic's exact
    expansion about its minimum, so ``f - f*`` keeps its digits near w*).
    """

    def __init__(
        self,
        eigs: np.ndarray,
        w_opt: np.ndarray,
        sigma: float,
        beta: float,
        batch_size: int,
        workers: WorkerQuadratics | None = None,
    ) -> None:
        self.eigs, self.sigma, self.beta = eigs, sigma, beta
        self.d = eigs.shape[0]
        self.batch_size = batch_size
        self._normals = batch_size * quadratic.normals_per_sample(self.d, beta)
        if workers is None:  # one quadratic: a single row every rank steps on
            workers = WorkerQuadratics(eigs[None, :], w_opt[None, :], w_opt, 0.0)
        self.workers = workers
        self.w_opt, self.f_opt = workers.w_opt, workers.f_opt
        self.center = workers.w_opt  # the loss's w* (w_opt is typed Optional on Problem)
        one = workers.curvatures.shape[0] == 1 or np.all(workers.curvatures == eigs)
        # Equal rows: the mean is eigs itself, bit for bit (a computed mean may round).
        self.mean_curvature = eigs if one else workers.curvatures.mean(axis=0)

    @property
    def uniforms_per_step(self) -> int:
        return uniforms_per_step_for_normals(self._normals)

    def step_kernel(self) -> StepKernel:
        curvatures, centers = self.workers.curvatures, self.workers.centers
        if np.all(curvatures == curvatures[0]) and np.all(centers == centers[0]):
            curvatures, centers = curvatures[:1], centers[:1]  # one quadratic: one row
        data = steps.Quadratic(
            np.ascontiguousarray(curvatures), np.ascontiguousarray(centers),
            math.sqrt(self.beta), self.sigma, self.batch_size,
        )  # fmt: skip
        return StepKernel(data, self._normals_of)

    def _normals_of(self, uniforms: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(normals_from_uniforms(uniforms, self._normals))

    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        if shard != 0:
            return 0.0
        e = w - self.center
        return 0.5 * float(e @ (self.mean_curvature * e)) + self.workers.f_opt

    def finish_loss(self, total: float, w: np.ndarray) -> float:
        return total
