"""Theory curves for figures: which closed form of ``parsgd.analysis.theory`` applies to a run.

A registry of one function per problem kind. Each takes a run's resolved config, a trace
column and the per-worker steps to evaluate at, and returns the expected value of that
column at those steps, or None when its closed form does not cover the config (then the
next one is tried). A closed form for another problem is added with ``@_closed_form``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from parsgd.analysis.theory import gaussian_least_squares_dist_sq, quadratic_dist_sq
from parsgd.schedules import AveragingSchedule

TheoryCurve = Callable[[dict[str, Any], str, np.ndarray], "np.ndarray | None"]

CLOSED_FORMS: dict[str, TheoryCurve] = {}


def _closed_form(name: str) -> Callable[[TheoryCurve], TheoryCurve]:
    def register(function: TheoryCurve) -> TheoryCurve:
        CLOSED_FORMS[name] = function
        return function

    return register


def theory_curve(config: dict[str, Any], column: str, steps: np.ndarray) -> np.ndarray | None:
    """The predicted expectation of ``column`` at ``steps``, or None where none is known."""
    for function in CLOSED_FORMS.values():
        curve = function(config, column, steps)
        if curve is not None:
            return curve
    return None


def _constant_step_size(config: dict[str, Any]) -> float | None:
    spec = config["sgd"]["step_size"]
    if isinstance(spec, (int, float)):
        return float(spec)
    if isinstance(spec, dict) and spec.get("kind") == "constant":
        return float(spec["eta0"])
    return None


@_closed_form("gaussian_least_squares")
def _gaussian_least_squares(
    config: dict[str, Any], column: str, steps: np.ndarray
) -> np.ndarray | None:
    """PAPER.md (iii): fresh Gaussian samples, no L2, constant step, shared zero start."""
    data, objective, sgd = config["data"], config["objective"], config["sgd"]
    alpha = _constant_step_size(config)
    if (
        data.get("kind") != "gaussian_linear"
        or not data.get("stream")
        or objective.get("kind") != "least_squares"
        or objective.get("l2", 0.0) != 0.0
        or config.get("method", "local_sgd") != "local_sgd"
        or sgd.get("init", "zeros") != "zeros"
        or alpha is None
        or column not in ("dist_opt_sq", "subopt", "loss")
    ):
        return None
    from parsgd.data.synthetic import planted_weights

    w_opt = planted_weights(data["d"], data["seed"])
    averaging = AveragingSchedule.from_config(config["averaging"]).averaging_steps(sgd["steps"])
    dist = gaussian_least_squares_dist_sq(
        d=data["d"],
        noise_std=data["noise"],
        step_size=alpha,
        batch_size=sgd["batch_size"],
        workers=config["workers"],
        initial_dist_sq=float(w_opt @ w_opt),
        averaging_steps=averaging,
        at_steps=np.asarray(steps, dtype=np.int64),
    )
    # Population loss 1/2 (||w - w*||^2 + s^2), so f - f* is half the squared distance.
    if column == "subopt":
        return dist / 2
    if column == "loss":
        return (dist + data["noise"] ** 2) / 2
    return dist


@_closed_form("quadratic")
def _quadratic(config: dict[str, Any], column: str, steps: np.ndarray) -> np.ndarray | None:
    """PAPER.md (i)-(ii) in d dimensions: constant step, shared zero start, local SGD."""
    objective, sgd = config["objective"], config["sgd"]
    alpha = _constant_step_size(config)
    if (
        objective.get("kind") != "quadratic"
        or config.get("method", "local_sgd") != "local_sgd"
        or sgd.get("init", "zeros") != "zeros"
        or alpha is None
        or column not in ("dist_opt_sq",)
    ):
        return None
    from parsgd.data.synthetic import planted_weights, spectrum

    d = objective["d"]
    eigs = spectrum(d, objective["eig_max"], objective["eig_min"], objective["eigenvalues"])
    w_opt = planted_weights(d, config["seed"])  # as parsgd.problems.registry builds the quadratic
    averaging = AveragingSchedule.from_config(config["averaging"]).averaging_steps(sgd["steps"])
    return quadratic_dist_sq(
        eigenvalues=eigs,
        initial_error=-w_opt,
        beta=objective["beta"],
        sigma=objective["sigma"],
        step_size=alpha,
        batch_size=sgd["batch_size"],
        workers=config["workers"],
        averaging_steps=averaging,
        at_steps=np.asarray(steps, dtype=np.int64),
    )
