"""The quadratic's envelope, PAPER.md (i) and (ii), through the CLI.

(i) beta = 0: every step is affine, so with the same draws every schedule ends at the same
average. (ii) beta > 0: more frequent averaging gives a lower mean dist_opt_sq, and the mean
over trials matches ``theory.quadratic_dist_sq`` within z = 4 standard errors estimated from
the trials, while closed forms with a wrong beta or sigma are rejected (the test's power).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import run_cli, write_config

from parsgd.analysis.theory import quadratic_dist_sq
from parsgd.config.load import load_config
from parsgd.data.synthetic import planted_weights, spectrum
from parsgd.engine.rundir import read_trace
from parsgd.schedules import AveragingSchedule


def _quadratic_config(path: Path, **sections: object) -> Path:
    """``write_config`` with no data set (the quadratic makes its own noise)."""
    write_config(path, **sections)
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {"kind": "none"}
    path.write_text(yaml.safe_dump(raw))
    return path


Z = 4.0
QUADRATIC = {"kind": "quadratic", "d": 4, "eig_max": 1.0, "eig_min": 0.25, "sigma": 0.5}


def _run(config: Path, every: str, out: Path) -> list[dict[str, str]]:
    result = run_cli(
        "run", str(config), "--set", f"averaging.every={every}", "--set", f"name=q{every}",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return read_trace(out / f"q{every}" / "trace.csv")


def test_additive_noise_gives_the_same_final_average_for_every_schedule(tmp_path: Path) -> None:
    config = _quadratic_config(
        tmp_path / "q.yaml", trials=3, workers=3, backend="serial",
        objective={**QUADRATIC, "beta": 0.0}, sgd={"steps": 300, "step_size": 0.1},
    )  # fmt: skip
    finals = {}
    for every in ("1", "10", "end"):
        rows = _run(config, every, tmp_path)
        finals[every] = np.array(
            [[float(r["dist_opt_sq"]), float(r["loss"])] for r in rows if r["step"] == "300"]
        )
    np.testing.assert_allclose(finals["10"], finals["1"], rtol=1e-10)
    np.testing.assert_allclose(finals["end"], finals["1"], rtol=1e-10)
    assert finals["1"].shape == (3, 2)


BETA, SIGMA = 1.5, 0.25  # beta != 1: beta, beta^2 and sqrt(beta) all differ
TRIALS, STEPS = 600, 200
STATIONARY = np.arange(100, STEPS + 1, 10)  # the recorded steps averaged per trial


def _closed_form(every: str, beta: float, sigma: float) -> float:
    """The closed form's mean dist_opt_sq over the STATIONARY steps."""
    averaging = {"every": every if every == "end" else int(every)}
    return float(
        quadratic_dist_sq(
            eigenvalues=spectrum(4, 1.0, 0.25, None), initial_error=-planted_weights(4, 0),
            beta=beta, sigma=sigma, step_size=0.1, batch_size=1, workers=4,
            averaging_steps=AveragingSchedule.from_config(averaging).averaging_steps(STEPS),
            at_steps=STATIONARY,
        ).mean()
    )  # fmt: skip


# Plausible wrong closed forms: beta halved or squared (a wrong power), sigma off by 25%.
WRONG = {"beta/2": (BETA / 2, SIGMA), "beta^2": (BETA**2, SIGMA),
         "sigma*1.25": (BETA, SIGMA * 1.25), "sigma*0.8": (BETA, SIGMA * 0.8)}  # fmt: skip


@pytest.mark.slow
def test_growing_envelope_favours_frequent_averaging_as_theory_predicts(tmp_path: Path) -> None:
    """Per trial, dist_opt_sq averaged over steps 100..200 (less heavy-tailed than one step);
    its mean over TRIALS must be within Z standard errors (estimated from the trials) of the
    closed form, and each wrong closed form in WRONG must be rejected by some schedule."""
    config = _quadratic_config(
        tmp_path / "q.yaml", trials=TRIALS, workers=4, backend="serial", seed=0,
        objective={**QUADRATIC, "beta": BETA, "sigma": SIGMA},
        sgd={"steps": STEPS, "step_size": 0.1, "init": "zeros"}, eval={"every": 10},
    )  # fmt: skip
    assert load_config(config).objective.beta == BETA
    per_trial: dict[str, np.ndarray] = {}
    rejected: dict[str, list[str]] = {name: [] for name in WRONG}
    for every in ("10", "end"):
        rows = _run(config, every, tmp_path)
        values = np.zeros(TRIALS)
        for row in rows:
            if int(row["step"]) in STATIONARY:
                values[int(row["trial"])] += float(row["dist_opt_sq"]) / len(STATIONARY)
        per_trial[every] = values
        mean, stderr = values.mean(), values.std(ddof=1) / np.sqrt(TRIALS)
        theory = _closed_form(every, BETA, SIGMA)
        assert abs(mean - theory) < Z * stderr, (every, mean, theory, stderr)
        for name, (beta, sigma) in WRONG.items():
            if abs(mean - _closed_form(every, beta, sigma)) > Z * stderr:
                rejected[name].append(every)
    # The check has power: every plausible wrong closed form fails it.
    assert all(rejected.values()), rejected
    # Same draws for every schedule, so compare paired differences trial by trial.
    diff = per_trial["end"] - per_trial["10"]
    assert diff.mean() > Z * diff.std(ddof=1) / np.sqrt(TRIALS)


def test_noise_that_vanishes_at_the_optimum_converges_faster_with_frequent_averaging(
    tmp_path: Path,
) -> None:
    """sigma = 0: no noise floor, so every schedule converges linearly; averaging every step
    gives the faster rate (PAPER.md (ii)), for every trial with the same draws."""
    config = _quadratic_config(
        tmp_path / "q.yaml", trials=10, workers=4, backend="serial",
        objective={**QUADRATIC, "eig_min": 1.0, "sigma": 0.0, "beta": 3.0},
        sgd={"steps": 200, "step_size": 0.1}, eval={"every": 200},
    )  # fmt: skip
    final = {}
    for every in ("1", "end"):
        rows = _run(config, every, tmp_path)
        start = float(rows[0]["dist_opt_sq"])
        final[every] = np.array([float(r["dist_opt_sq"]) for r in rows if r["step"] == "200"])
        assert np.all(final[every] < 1e-3 * start), (every, final[every])
    # Mean-square rates per step (theory): 0.84 averaging every step, 0.93 one-shot.
    gap = np.log(final["end"]) - np.log(final["1"])
    assert np.all(gap > 0) and gap.mean() > 5.0, gap
