"""Legal but doubtful settings: each gets a warning, none stops the run."""

from __future__ import annotations

from parsgd.analysis.theory import quadratic_second_moment_rate
from parsgd.config.kind_specs import GaussianLinearData, LeastSquaresObjective, QuadraticObjective
from parsgd.config.kinds import RANDOM_START_OBJECTIVES
from parsgd.config.load import usable_cpus
from parsgd.config.spec import RunSpec
from parsgd.data.synthetic import spectrum
from parsgd.engine import backends


def advisories(spec: RunSpec) -> list[str]:
    """Warnings for a run's spec, in plain words."""
    notes = []
    workers, steps = spec.workers, spec.sgd.steps
    schedule = spec.averaging.schedule
    if workers == 1 and spec.method == "local_sgd":
        notes.append("averaging with one worker changes nothing: this is plain SGD")
    every = schedule.every
    if isinstance(every, int) and every > steps:
        notes.append(
            f"averaging.every ({every}) is larger than sgd.steps ({steps}): "
            "this is one-shot averaging"
        )
    if backends.info(spec.backend).process_per_worker and workers > usable_cpus():
        notes.append(
            f"{workers} workers on {usable_cpus()} usable cores: every worker shares a core, "
            "the run will be slow and wall times are not representative"
        )
    data, objective, sgd = spec.data, spec.objective, spec.sgd
    largest = sgd.step_size.largest
    if isinstance(data, GaussianLinearData) and isinstance(objective, LeastSquaresObjective):
        # PAPER.md (iii): E||e||^2 contracts iff (1-a)^2 + a^2 (d+1)/b < 1.
        batch, d = sgd.batch_size, data.d
        bound = 2 * batch / (batch + d + 1)
        if largest >= bound:
            notes.append(
                f"sgd.step_size {largest:g} is at or above the stability bound "
                f"2b/(b+d+1) = {bound:.4g} for Gaussian least squares: the run will diverge"
            )
    if isinstance(objective, QuadraticObjective):
        eigs = spectrum(objective.d, objective.eig_max, objective.eig_min, objective.eigenvalues)
        if objective.curvature_spread > 0.0:  # the stiffest worker decides
            from parsgd.problems.quadratic import worker_quadratics  # numba: only when needed

            spread = objective.curvature_spread
            problem = worker_quadratics(eigs, eigs, 0.0, spread, spec.ranks, spec.seed)
            eigs = problem.curvatures.max(axis=0)
        rate = quadratic_second_moment_rate(eigs, objective.beta, largest, sgd.batch_size)
        if rate >= 1.0:
            notes.append(
                f"sgd.step_size {largest:g} is too large for this quadratic: one "
                f"worker's E||w - w*||^2 grows by a factor {rate:.6f} per step (theory."
                "quadratic_second_moment_rate); the run will diverge"
            )
    heterogeneous = isinstance(objective, QuadraticObjective) and objective.heterogeneous
    if heterogeneous and spec.method == "single":
        notes.append(
            "method single runs one worker: with objective.zeta or curvature_spread it "
            "minimises worker 0's quadratic, not the mean of the workers' quadratics"
        )
    if objective.kind in RANDOM_START_OBJECTIVES and sgd.init == "zeros":
        notes.append(
            f"sgd.init zeros is a stationary point of {objective.kind} (pca: the saddle "
            "w = 0 never moves; mlp: hidden units stay identical): use shared or independent"
        )
    if schedule.step_set(steps).size > 100_000 and workers > 1:
        notes.append("more than 100,000 averaging rounds: the run is dominated by meetings")
    return notes
