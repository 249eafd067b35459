"""The planted logistic stream: its population loss (quadrature) against Monte Carlo, and its
optimum (c w_true) against small moves."""

from __future__ import annotations

import numpy as np
import pytest

from parsgd.problems.planted import PlantedStream

Z = 4.0


@pytest.mark.parametrize("kind", ["least_squares", "logistic", "hinge"])
def test_population_loss_matches_monte_carlo(kind: str) -> None:
    rng = np.random.default_rng(3)
    w_true = rng.standard_normal(4)
    problem = PlantedStream(w_true, kind, 0.0, 1)
    n = 400_000
    X = rng.standard_normal((n, 4))
    y = np.where(rng.random(n) < 1.0 / (1.0 + np.exp(-X @ w_true)), 1.0, -1.0)
    for w in (np.zeros(4), rng.standard_normal(4), 3.0 * rng.standard_normal(4)):
        m = X @ w
        losses = {
            "least_squares": 0.5 * (m - y) ** 2,
            "logistic": np.logaddexp(0.0, -y * m),
            "hinge": np.maximum(0.0, 1.0 - y * m),
        }[kind]
        stderr = losses.std() / np.sqrt(n)
        assert abs(problem.loss(w) - losses.mean()) < Z * stderr + 1e-12


@pytest.mark.parametrize(("kind", "l2"), [("logistic", 0.0), ("logistic", 0.1), ("hinge", 0.1)])
def test_optimum_is_not_improved_by_small_moves(kind: str, l2: float) -> None:
    rng = np.random.default_rng(4)
    w_true = 2.0 * rng.standard_normal(3) / np.sqrt(3)
    problem = PlantedStream(w_true, kind, l2, 1)
    assert problem.w_opt is not None and problem.f_opt is not None
    if kind == "logistic" and l2 == 0.0:
        np.testing.assert_array_equal(problem.w_opt, w_true)  # well specified
    for _ in range(50):
        step = rng.standard_normal(3)
        for t in (1e-2, 1e-4):
            moved = problem.w_opt + t * step / np.linalg.norm(step)
            assert problem.loss(moved) >= problem.f_opt - 1e-12
