"""Theory curves for figures: which closed form of ``parsgd.analysis.theory`` applies to a run.

A registry of one function per problem kind. Each takes a run's spec, a trace
column and the per-worker steps to evaluate at, and returns the expected value of that
column at those steps, or None when its closed form does not cover the config (then the
next one is tried). A closed form for another problem is added with ``@_closed_form``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from parsgd.analysis.theory import gaussian_least_squares_dist_sq
from parsgd.analysis.theory_hetero import HeteroMoments, hetero_quadratic_moments
from parsgd.config.kind_specs import GaussianLinearData, LeastSquaresObjective, QuadraticObjective
from parsgd.config.spec import RunSpec

TheoryCurve = Callable[[RunSpec, str, np.ndarray], "np.ndarray | None"]

CLOSED_FORMS: dict[str, TheoryCurve] = {}


def _closed_form(name: str) -> Callable[[TheoryCurve], TheoryCurve]:
    def register(function: TheoryCurve) -> TheoryCurve:
        CLOSED_FORMS[name] = function
        return function

    return register


def theory_curve(spec: RunSpec | None, column: str, steps: np.ndarray) -> np.ndarray | None:
    """The predicted expectation of ``column`` at ``steps``, or None where none is known
    (or the run has no spec: ``analysis.runs.Run.spec``)."""
    if spec is None or spec.sgd.momentum > 0.0:  # the closed forms are for plain SGD
        return None
    for function in CLOSED_FORMS.values():
        curve = function(spec, column, steps)
        if curve is not None:
            return curve
    return None


def _constant_step_size(spec: RunSpec) -> float | None:
    step_size = spec.sgd.step_size
    return step_size.eta0 if step_size.kind == "constant" else None


@_closed_form("gaussian_least_squares")
def _gaussian_least_squares(spec: RunSpec, column: str, steps: np.ndarray) -> np.ndarray | None:
    """PAPER.md (iii): fresh Gaussian samples, no L2, constant step, shared zero start."""
    data, objective, sgd = spec.data, spec.objective, spec.sgd
    alpha = _constant_step_size(spec)
    if (
        not isinstance(data, GaussianLinearData)
        or not data.stream
        or not isinstance(objective, LeastSquaresObjective)
        or objective.l2 != 0.0
        or spec.method != "local_sgd"
        or sgd.init != "zeros"
        or alpha is None
        or column not in ("dist_opt_sq", "subopt", "loss")
    ):
        return None
    from parsgd.data.synthetic import planted_weights

    d, noise = data.d, data.noise
    w_opt = planted_weights(d, data.seed)
    dist = gaussian_least_squares_dist_sq(
        d=d,
        noise_std=noise,
        step_size=alpha,
        batch_size=sgd.batch_size,
        workers=spec.workers,
        initial_dist_sq=float(w_opt @ w_opt),
        averaging_steps=spec.averaging.schedule.averaging_steps(sgd.steps),
        at_steps=np.asarray(steps, dtype=np.int64),
    )
    # Population loss 1/2 (||w - w*||^2 + s^2), so f - f* is half the squared distance.
    if column == "subopt":
        return dist / 2
    if column == "loss":
        return (dist + noise**2) / 2
    return dist


@_closed_form("quadratic")
def _quadratic(spec: RunSpec, column: str, steps: np.ndarray) -> np.ndarray | None:
    """PAPER.md (i)-(ii) in d dimensions, and the heterogeneous quadratic (per-worker c_m,
    A_m: ``theory_hetero``): shared zero start, local SGD, any step-size schedule."""
    moments = quadratic_moments(spec, steps)
    if moments is None or column not in ("dist_opt_sq", "subopt"):
        return None
    return moments.dist_opt_sq if column == "dist_opt_sq" else moments.subopt


def quadratic_moments(spec: RunSpec, steps: np.ndarray) -> HeteroMoments | None:
    """The exact moments of the averaged model of a quadratic run at ``steps`` (per-worker
    steps), built from the same worker quadratics and schedule as the run; None where the
    recursion does not apply (another objective or method, a random start)."""
    sgd, objective = spec.sgd, spec.objective
    quadratic_from_zero = spec.method == "local_sgd" and sgd.init == "zeros"
    if not isinstance(objective, QuadraticObjective) or not quadratic_from_zero:
        return None
    from parsgd.data.synthetic import planted_weights, spectrum
    from parsgd.problems.quadratic import worker_quadratics
    from parsgd.schedules import global_set

    d, total, workers = objective.d, sgd.steps, spec.ranks
    eigs = spectrum(d, objective.eig_max, objective.eig_min, objective.eigenvalues)
    center = planted_weights(d, spec.seed)  # as parsgd.problems.registry builds the quadratic
    spread = objective.curvature_spread
    problem = worker_quadratics(eigs, center, objective.zeta, spread, workers, spec.seed)
    rounds = spec.averaging.schedule.step_set(total)
    averaging = rounds.steps()
    # Rounds that are not global average within each node's workers (hierarchical runs).
    rounds_global = global_set(rounds, spec.averaging.global_every, total).steps()
    is_global = np.isin(averaging, rounds_global)
    at = np.asarray(steps, dtype=np.int64)
    return hetero_quadratic_moments(
        curvatures=problem.curvatures,
        centers=problem.centers,
        w_opt=problem.w_opt,
        start=np.zeros(d),
        etas=sgd.step_size.values(0, max(total, int(at.max(initial=0)))),
        beta=objective.beta,
        sigma=objective.sigma,
        batch_size=sgd.batch_size,
        averaging_steps=averaging,
        at_steps=at,
        group_sizes=np.where(is_global, workers, workers // spec.nodes),
    )
