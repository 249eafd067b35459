"""The heterogeneous quadratic: per-worker optima c_m and curvatures A_m, and its theory.

Unit checks of ``parsgd.analysis.theory_hetero`` (the fixed point of the expected average,
its closed form after k rounds, the moment recursion against an independent joint form),
then runs through the CLI against it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from parsgd.analysis.theory_hetero import (
    averaging_matrix,
    hetero_quadratic_moments,
    mean_model_after_rounds,
    mean_model_fixed_point,
)
from parsgd.data.synthetic import planted_weights, spectrum
from parsgd.problems.quadratic import global_optimum, worker_quadratics

D, M, ETA = 4, 4, 0.1
EIGS = spectrum(D, 1.0, 0.25, None)
CENTER = planted_weights(D, 0)


def _workers(zeta: float, spread: float, workers: int = M, seed: int = 0):  # type: ignore[no-untyped-def]
    return worker_quadratics(EIGS, CENTER, zeta, spread, workers, seed)


# -- the problem ------------------------------------------------------------------------------


def test_worker_quadratics_are_a_pure_function_of_seed_and_worker() -> None:
    few, many = _workers(1.0, 0.5, workers=2), _workers(1.0, 0.5, workers=5)
    assert np.array_equal(few.centers, many.centers[:2])  # worker m's draw: (seed, m) only
    assert np.array_equal(few.curvatures, many.curvatures[:2])
    other = worker_quadratics(EIGS, CENTER, 1.0, 0.5, 2, seed=1)
    assert not np.array_equal(other.centers, few.centers)
    # zeta and spread scale the same draws: the offsets of zeta = 2 are twice those of 1.
    np.testing.assert_allclose(
        _workers(2.0, 0.5).centers - CENTER, 2 * (_workers(1.0, 0.5).centers - CENTER), rtol=1e-14
    )
    spread = _workers(1.0, 0.5).curvatures / EIGS
    assert np.all((spread >= 0.5) & (spread <= 1.5))


def test_homogeneous_defaults_are_exact_copies_of_the_one_quadratic() -> None:
    same = _workers(0.0, 0.0)
    assert np.array_equal(same.centers, np.tile(CENTER, (M, 1)))
    assert np.array_equal(same.curvatures, np.tile(EIGS, (M, 1)))
    assert np.array_equal(same.w_opt, CENTER) and same.f_opt == 0.0


def test_global_optimum_minimises_the_mean_objective() -> None:
    p = _workers(1.0, 0.7)
    w_opt, f_opt = global_optimum(p.curvatures, p.centers)

    def f(w: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    0.5 * (w - c) @ (a * (w - c))
                    for a, c in zip(p.curvatures, p.centers, strict=True)
                ]
            )
        )

    gradient = np.mean(p.curvatures * (w_opt - p.centers), axis=0)
    np.testing.assert_allclose(gradient, 0.0, atol=1e-15)
    assert f(w_opt) == pytest.approx(f_opt, rel=1e-13)
    rng = np.random.default_rng(0)
    assert all(f(w_opt + 1e-3 * rng.standard_normal(D)) > f_opt for _ in range(20))
    # Differing curvatures pull w* away from the plain mean of the c_m.
    assert np.linalg.norm(w_opt - p.centers.mean(axis=0)) > 1e-2


# -- the fixed point --------------------------------------------------------------------------


def test_fixed_point_is_the_global_optimum_at_h1_and_drifts_to_the_mean_of_the_optima() -> None:
    p = _workers(1.0, 0.7)
    np.testing.assert_allclose(mean_model_fixed_point(p.curvatures, p.centers, ETA, 1), p.w_opt,
                               rtol=1e-13)  # fmt: skip
    mean_c = p.centers.mean(axis=0)
    gaps = [
        np.linalg.norm(mean_model_fixed_point(p.curvatures, p.centers, ETA, h) - mean_c)
        for h in (1, 4, 16, 64, 256, 1024, 8192)
    ]
    assert all(b < a for a, b in itertools.pairwise(gaps))  # toward mean(c_m)
    assert gaps[-1] < 1e-9 * gaps[0]


@pytest.mark.parametrize("every", [1, 2, 7, 50, 400])
def test_identical_curvatures_keep_the_fixed_point_at_the_global_optimum(every: int) -> None:
    """The second exact check: with A_m all equal, wbar*(H) = w* = mean(c_m) for every H."""
    p = _workers(1.5, 0.0)
    np.testing.assert_allclose(p.w_opt, p.centers.mean(axis=0), rtol=1e-14)
    fixed = mean_model_fixed_point(p.curvatures, p.centers, ETA, every)
    np.testing.assert_allclose(fixed, p.w_opt, rtol=1e-13, atol=1e-15)


def test_fixed_point_refuses_a_step_size_that_does_not_contract() -> None:
    p = _workers(1.0, 0.5)
    with pytest.raises(ValueError, match="does not contract"):
        mean_model_fixed_point(p.curvatures, p.centers, 2.5, 3)


def test_recursion_reaches_the_closed_form_after_k_rounds() -> None:
    p = _workers(1.0, 0.7)
    every, rounds = 5, 12
    steps = every * rounds
    moments = hetero_quadratic_moments(
        curvatures=p.curvatures, centers=p.centers, w_opt=p.w_opt, start=np.zeros(D),
        etas=np.full(steps, ETA), beta=0.3, sigma=0.5, batch_size=2,
        averaging_steps=np.arange(every, steps + 1, every), at_steps=np.array([steps]),
    )  # fmt: skip
    closed = mean_model_after_rounds(p.curvatures, p.centers, np.zeros(D), ETA, every, rounds)
    np.testing.assert_allclose(moments.mean_model[0], closed, rtol=1e-12)


def _joint_moments(p, start, etas, beta, sigma, batch, averaging, groups, at):  # type: ignore[no-untyped-def]
    """Written apart from the module: the stacked model w (M d) has mean mu and covariance
    C; a step is w' = B w + (I - B) c - eta n with B = blockdiag(I - eta A_m) and
    Cov n = blockdiag((beta E||w_m - c_m||^2 + sigma^2) / b I); a round is w <- (P (x) I) w."""
    Mw, d = p.curvatures.shape
    c = p.centers.reshape(-1)
    mu = np.tile(start, Mw).astype(float)
    C = np.zeros((Mw * d, Mw * d))
    Q = np.kron(np.full((1, Mw), 1.0 / Mw), np.eye(d))
    out = {}
    rounds = dict(zip(averaging.tolist(), groups.tolist(), strict=True))
    for step in range(int(max(at)) + 1):
        if step > 0:
            eta = etas[step - 1]
            B = np.diag(1.0 - eta * p.curvatures.reshape(-1))
            own = [
                np.trace(C[m * d : (m + 1) * d, m * d : (m + 1) * d])
                + np.sum((mu[m * d : (m + 1) * d] - c[m * d : (m + 1) * d]) ** 2)
                for m in range(Mw)
            ]
            noise = np.kron(np.diag([(beta * o + sigma**2) / batch for o in own]), np.eye(d))
            C = B @ C @ B.T + eta**2 * noise
            mu = B @ mu + (np.eye(Mw * d) - B) @ c
        if step in rounds:
            P = np.kron(averaging_matrix(Mw, rounds[step]), np.eye(d))
            mu, C = P @ mu, P @ C @ P.T
        mean = Q @ mu
        out[step] = (mean, float(np.sum((mean - p.w_opt) ** 2) + np.trace(Q @ C @ Q.T)))
    return out


def test_moment_recursion_matches_the_joint_form_with_groups_and_a_varying_step() -> None:
    p = _workers(1.0, 0.6)
    etas = 0.12 / (1.0 + np.arange(60) / 20.0)  # an inverse schedule: exact too
    averaging = np.array([3, 6, 10, 20, 30, 45, 60])
    groups = np.array([2, 2, 4, 2, 4, 2, 4])  # 2 nodes of 2: within-node and global rounds
    at = np.array([0, 1, 5, 10, 33, 60])
    moments = hetero_quadratic_moments(
        curvatures=p.curvatures, centers=p.centers, w_opt=p.w_opt, start=np.zeros(D),
        etas=etas, beta=0.4, sigma=0.3, batch_size=2, averaging_steps=averaging,
        at_steps=at, group_sizes=groups,
    )  # fmt: skip
    joint = _joint_moments(p, np.zeros(D), etas, 0.4, 0.3, 2, averaging, groups, at)
    for j, step in enumerate(at.tolist()):
        np.testing.assert_allclose(moments.mean_model[j], joint[step][0], rtol=1e-11, atol=1e-15)
        assert moments.dist_opt_sq[j] == pytest.approx(joint[step][1], rel=1e-11)
    abar = p.curvatures.mean(axis=0)
    assert moments.subopt[0] == pytest.approx(0.5 * abar @ (p.w_opt**2), rel=1e-13)
