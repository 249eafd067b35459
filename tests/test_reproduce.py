"""The paper reproduction (``configs/paper/``, ``scripts/reproduce_paper.sh``) without its
minutes of running: every sweep file expands and validates, the quadratic's theory curve
agrees with an independent derivation, and the whole script runs end to end at toy sizes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import ROOT, cli_in_process

from parsgd.analysis.theory_curves import theory_curve
from parsgd.config.load import load_config
from parsgd.config.spec import RunSpec
from parsgd.data.synthetic import planted_weights, spectrum
from parsgd.schedules import AveragingSchedule

PAPER = ROOT / "configs" / "paper"
SCRIPT = ROOT / "scripts" / "reproduce_paper.sh"
SWEEPS = sorted(PAPER.glob("*.yaml"))
FULL = sorted((PAPER / "full").glob("*.yaml"))
FIGURES = {
    "1-quadratic-beta0.png", "1-quadratic-beta1.5.png", "2-least-squares-noisy.png",
    "2-least-squares-noiseless.png", "3-logistic-samples.png", "3-logistic-time-to-target.png",
    "4-pca.png", "5-mlp-accuracy.png", "5-mlp-loss.png", "6-softmax-accuracy.png",
    "6-softmax-network-ethernet.png", "6-softmax-network-infiniband.png",
    "7-hierarchical.png", "8-hetero-quadratic.png", "9-hetero-digits.png",
}  # fmt: skip


def test_there_are_nine_experiments_each_with_a_full_variant() -> None:
    assert len(SWEEPS) == 9
    assert [p.name for p in FULL] == [p.name for p in SWEEPS]


@pytest.mark.parametrize("path", SWEEPS + FULL, ids=lambda p: str(p.relative_to(PAPER)))
def test_every_paper_sweep_expands_and_validates(path: Path) -> None:
    # In this process: the same expansion and checks without a start-up per file (the
    # command-line path of `sweep --list` is test_sweep.py's).
    result = cli_in_process("sweep", str(path), "--list")
    assert result.returncode == 0, result.stderr
    assert path.read_text().startswith("# "), "each sweep is documented at its top"


def test_the_full_variants_are_the_same_sweeps() -> None:
    for small, full in zip(SWEEPS, FULL, strict=True):
        a, b = yaml.safe_load(small.read_text()), yaml.safe_load(full.read_text())
        same = ("name", "grid", "zip")
        assert [a.get(k) for k in same] == [b.get(k) for k in same], small.name


def test_the_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def _joint_second_moment(
    eigenvalues: np.ndarray,
    e0: np.ndarray,
    beta: float,
    sigma: float,
    step_size: float,
    workers: int,
    averaging_steps: np.ndarray,
    at_steps: np.ndarray,
) -> np.ndarray:
    """E||w_avg - w*||^2 from the full second-moment matrix of all workers' errors at once.

    Written independently of ``quadratic_dist_sq`` (which tracks per-coordinate moments):
    the joint error e = (e_1..e_M) has S = E[e e^T]; a step is e_m' = (I - a A) e_m
    - a (sqrt(beta) Z_m e_m + sigma xi_m), so S' = B S B^T + a^2 blockdiag(beta tr(S_mm)
    + sigma^2) I with B = I_M (x) (I - a A), since E[(Z e)(Z e)^T | e] = ||e||^2 I; an
    averaging step is S <- P S P^T with P = (1/M) 1 1^T (x) I.
    """
    d, M = len(eigenvalues), workers
    B = np.kron(np.eye(M), np.eye(d) - step_size * np.diag(eigenvalues))
    P = np.kron(np.full((M, M), 1.0 / M), np.eye(d))
    Q = np.kron(np.full((1, M), 1.0 / M), np.eye(d))  # e_avg = Q e
    start = np.tile(e0, M)
    S = np.outer(start, start)
    out = {}
    for step in range(int(max(at_steps)) + 1):
        if step > 0:
            blocks = [np.trace(S[m * d : (m + 1) * d, m * d : (m + 1) * d]) for m in range(M)]
            noise = np.kron(np.diag([beta * t + sigma**2 for t in blocks]), np.eye(d))
            S = B @ S @ B.T + step_size**2 * noise
        if step in set(averaging_steps.tolist()):
            S = P @ S @ P.T
        out[step] = float(np.trace(Q @ S @ Q.T))
    return np.array([out[int(t)] for t in at_steps])


def test_quadratic_theory_curve_matches_an_independent_derivation(tmp_path: Path) -> None:
    sweep = yaml.safe_load((PAPER / "1-quadratic-envelope.yaml").read_text())
    config_path = tmp_path / "q.yaml"
    raw = {**sweep["config"], "name": "q", "trials": 1, "averaging": {"every": 10}}
    raw["objective"] = {**raw["objective"], "beta": 1.5}
    config_path.write_text(yaml.safe_dump(raw))
    spec = load_config(config_path)
    config = spec.to_dict()
    steps = np.array([0, 5, 10, 15, 400])
    curve = theory_curve(spec, "dist_opt_sq", steps)
    objective, sgd = config["objective"], config["sgd"]
    assert sgd["batch_size"] == 1 and sgd["init"] == "zeros"
    expected = _joint_second_moment(
        spectrum(objective["d"], objective["eig_max"], objective["eig_min"], None),
        -planted_weights(objective["d"], config["seed"]), 1.5, objective["sigma"],
        sgd["step_size"], config["workers"],
        AveragingSchedule.from_config({"every": 10}).averaging_steps(400), steps,
    )  # fmt: skip
    assert curve is not None
    np.testing.assert_allclose(curve, expected, rtol=1e-9)
    # A wrong beta or sigma would show: the derivation tells them apart at these steps.
    for beta, sigma in ((0.75, objective["sigma"]), (1.5, 1.25 * objective["sigma"])):
        wrong = _joint_second_moment(
            spectrum(objective["d"], objective["eig_max"], objective["eig_min"], None),
            -planted_weights(objective["d"], config["seed"]), beta, sigma,
            sgd["step_size"], config["workers"],
            AveragingSchedule.from_config({"every": 10}).averaging_steps(400), steps,
        )  # fmt: skip
        assert np.max(np.abs(wrong - curve) / curve) > 0.01
    assert theory_curve(spec, "loss", steps) is None  # only the distance has a closed form
    random_start = RunSpec.from_resolved({**config, "sgd": {**config["sgd"], "init": "shared"}})
    assert theory_curve(random_start, "dist_opt_sq", steps) is None


def _toy(sweep: dict[str, Any]) -> dict[str, Any]:
    """The same sweep at toy sizes: 2 trials, a few dozen steps."""
    config = sweep["config"]
    steps = 40 if config["objective"]["kind"] != "mlp" else 60
    config["sgd"]["steps"] = steps
    config["eval"] = {"every": 10}
    return {**sweep, "trials": 2}


@pytest.mark.slow
def test_the_script_runs_end_to_end_at_toy_sizes(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    for path in SWEEPS:
        toy = _toy(yaml.safe_load(path.read_text()))
        (configs / path.name).write_text(yaml.safe_dump(toy, sort_keys=False))
    out = tmp_path / "out"
    env = {**os.environ, "PARSGD": f"{sys.executable} -m parsgd"}
    result = subprocess.run(
        ["bash", str(SCRIPT), "--configs", str(configs), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert {p.name for p in (out / "figures").iterdir()} == FIGURES
    sweeps = ("quadratic-envelope", "least-squares", "logistic-real", "pca", "mlp-digits")
    for sweep in (*sweeps, "softmax-digits", "hierarchical", "hetero-quadratic", "hetero-digits"):
        assert (out / sweep / "report.md").is_file(), sweep
    # The theory curves were drawn: no "no closed form" note for the convex synthetic figures.
    assert "no closed form" not in result.stderr
