"""The heterogeneous quadratic: per-worker optima c_m and curvatures A_m, and its theory.

Unit checks of ``parsgd.analysis.theory_hetero`` (the fixed point of the expected average,
its closed form after k rounds, the moment recursion against an independent joint form),
then runs through the CLI against it.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import cli_in_process, run_cli

from parsgd.analysis.finals import compute_finals
from parsgd.analysis.runs import find_runs
from parsgd.analysis.theory_hetero import (
    HeteroMoments,
    averaging_matrix,
    hetero_quadratic_moments,
    mean_model_after_rounds,
    mean_model_fixed_point,
)
from parsgd.data.synthetic import planted_weights, spectrum
from parsgd.engine.rundir import read_trace
from parsgd.engine.worker import FAULT_ENV
from parsgd.problems.quadratic import global_optimum, worker_quadratics
from parsgd.schedules import AveragingSchedule
from tests.helpers import numbers

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


# -- through the command line -----------------------------------------------------------------

# One run's settings: 4 workers in d = 4, optima a distance zeta = 1 apart, curvatures within
# 1 +- 0.8 of the spectrum 1 .. 0.25, additive noise. Averaging every 10 of 200 steps leaves
# the expected average well off w* (the drift is ~40% of E||w_avg - w*||^2). With growing
# noise (beta > 0) the noise term would swamp the drift and weaken the power check against
# H/2; the recursion's beta terms are checked against the joint form above, and runs with
# beta > 0 below check the kernel's bits.
HETERO = {
    "kind": "quadratic", "d": D, "eig_max": 1.0, "eig_min": 0.25, "sigma": 0.1, "beta": 0.0,
    "zeta": 1.0, "curvature_spread": 0.8,
}  # fmt: skip
STEPS, EVERY, TRIALS = 200, 10, 300
# |z| > 4 is a false alarm with probability 6e-5 for a normal mean; the mean of 300 trials
# of a squared distance is close to normal (the tests below check the observed z of the
# right answer and of each wrong one).
Z = 4.0


def _config(path: Path, **sections: Any) -> Path:
    """A quadratic config (no data set) with the given sections merged in."""
    raw: dict[str, Any] = {
        "name": "h", "seed": 0, "trials": 4, "workers": M, "backend": "serial",
        "data": {"kind": "none"}, "objective": dict(HETERO),
        "sgd": {"steps": STEPS, "step_size": ETA, "batch_size": 1, "init": "zeros"},
        "averaging": {"every": EVERY}, "eval": {"every": 50},
    }  # fmt: skip
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    path.write_text(yaml.safe_dump(raw))
    return path


def _run(config: Path, out: Path, *sets: str) -> Path:
    overrides = [arg for s in sets for arg in ("--set", s)]
    done = run_cli("run", str(config), "--out", str(out), *overrides)
    assert done.returncode == 0, done.stderr
    return out / "h"


def _finals(run_dir: Path, column: str = "dist_opt_sq") -> np.ndarray:
    """Every trial's value of ``column`` at its last step, in trial order."""
    rows = read_trace(run_dir / "trace.csv")
    last = max(int(r["step"]) for r in rows)
    return np.array([float(r[column]) for r in rows if int(r["step"]) == last])


def _expected(every: int, zeta: float, *, steps: int = STEPS, **objective: Any) -> HeteroMoments:
    """The theory for this file's run with the given H and zeta (other keys overridable)."""
    settings = {**HETERO, "zeta": zeta, **objective}
    p = worker_quadratics(EIGS, CENTER, settings["zeta"], settings["curvature_spread"], M, 0)
    return hetero_quadratic_moments(
        curvatures=p.curvatures, centers=p.centers, w_opt=p.w_opt, start=np.zeros(D),
        etas=np.full(steps, ETA), beta=settings["beta"], sigma=settings["sigma"], batch_size=1,
        averaging_steps=AveragingSchedule(every=every).averaging_steps(steps),
        at_steps=np.array([steps]),
    )  # fmt: skip


@pytest.mark.slow
def test_mean_final_distance_matches_the_theory_and_rejects_a_wrong_h_or_zeta(
    tmp_path: Path,
) -> None:
    """TRIALS trials of one run: the mean final E||w_avg - w*||^2 (squared bias of the
    expected average plus its variance) sits within Z standard errors of the theory, and
    the theory at 2H, H/2, zeta/2 and 1.5 zeta is each more than Z standard errors away."""
    run = _run(_config(tmp_path / "c.yaml", trials=TRIALS), tmp_path / "out")
    finals = _finals(run)
    assert finals.size == TRIALS
    mean, stderr = finals.mean(), finals.std(ddof=1) / np.sqrt(TRIALS)

    def z(moments: HeteroMoments) -> float:
        return float((mean - moments.dist_opt_sq[0]) / stderr)

    right = _expected(EVERY, HETERO["zeta"])
    assert abs(z(right)) < Z, f"z = {z(right):.2f}"
    # The drift of the expected average is a large part of what is measured.
    bias = float(
        np.sum((right.mean_model[0] - worker_quadratics(EIGS, CENTER, 1.0, 0.8, M, 0).w_opt) ** 2)
    )
    assert bias > 0.25 * right.dist_opt_sq[0]
    zeta = HETERO["zeta"]
    wrong = {
        "2H": _expected(2 * EVERY, zeta), "H/2": _expected(EVERY // 2, zeta),
        "zeta/2": _expected(EVERY, zeta / 2), "1.5 zeta": _expected(EVERY, 1.5 * zeta),
    }  # fmt: skip
    for name, moments in wrong.items():
        assert abs(z(moments)) > Z, f"{name}: z = {z(moments):.2f} (the test lacks power)"


def test_without_noise_the_run_is_the_expected_average_and_settles_at_the_fixed_point(
    tmp_path: Path,
) -> None:
    """sigma = beta = 0: each worker's model is its expectation, so the trace's distance is
    ||E w_avg - w*||^2 from the recursion at every recorded step, and after many rounds it is
    the distance of the fixed point wbar*(H): w* itself at H = 1, off it at H = 10."""
    steps, eta = 1500, 0.3
    config = _config(
        tmp_path / "c.yaml", trials=1, objective={"sigma": 0.0, "beta": 0.0},
        sgd={"steps": steps, "step_size": eta}, eval={"every": 100},
    )  # fmt: skip
    p = worker_quadratics(EIGS, CENTER, 1.0, 0.8, M, 0)
    for every in (1, EVERY):
        run = _run(config, tmp_path / f"out{every}", f"averaging.every={every}")
        rows = read_trace(run / "trace.csv")
        at = np.array([int(r["step"]) for r in rows])
        moments = hetero_quadratic_moments(
            curvatures=p.curvatures, centers=p.centers, w_opt=p.w_opt, start=np.zeros(D),
            etas=np.full(steps, eta), beta=0.0, sigma=0.0, batch_size=1,
            averaging_steps=AveragingSchedule(every=every).averaging_steps(steps), at_steps=at,
        )  # fmt: skip
        measured = np.array([float(r["dist_opt_sq"]) for r in rows])
        np.testing.assert_allclose(measured, moments.dist_opt_sq, rtol=1e-9, atol=1e-20)
        closed = mean_model_after_rounds(p.curvatures, p.centers, np.zeros(D), eta, every,
                                         steps // every)  # fmt: skip
        np.testing.assert_allclose(moments.mean_model[-1], closed, rtol=1e-10, atol=1e-15)
        fixed = mean_model_fixed_point(p.curvatures, p.centers, eta, every)
        drift = float(np.sum((fixed - p.w_opt) ** 2))
        if every == 1:
            assert drift < 1e-28 and measured[-1] < 1e-20  # the global optimum itself
        else:
            assert drift > 1e-3 and measured[-1] == pytest.approx(drift, rel=1e-6)
        # subopt = loss - f* in the trace: its digits stop at those of f* (~0.1 here).
        subopt = np.array([float(r["subopt"]) for r in rows])
        np.testing.assert_allclose(subopt, moments.subopt, rtol=1e-8, atol=1e-15)


SWEEP_STEPS, SWEEP_TRIALS = 60, 12


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small sweep through ``parsgd sweep``: curvature spreads 0 and 0.8 by H = 1, 5 and
    one-shot, the same draws in every run (same seed, trials and workers)."""
    tmp = tmp_path_factory.mktemp("sweep")
    base = yaml.safe_load(_config(tmp / "c.yaml", trials=SWEEP_TRIALS).read_text())
    base["sgd"]["steps"] = SWEEP_STEPS
    base["eval"] = {"every": 30}
    grid = {"objective.curvature_spread": [0.0, 0.8], "averaging.every": [1, 5, "end"]}
    (tmp / "s.yaml").write_text(yaml.safe_dump({"name": "hq", "config": base, "grid": grid}))
    done = run_cli("sweep", str(tmp / "s.yaml"), "--out", str(tmp / "out"), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    return tmp / "out" / "hq"


def _point(sweep: Path, spread: float, every: int | str) -> Path:
    """The run directory of one sweep point, found from its saved config."""
    for config in sweep.glob("*/config.yaml"):
        raw = yaml.safe_load(config.read_text())
        if (raw["objective"]["curvature_spread"], raw["averaging"]["every"]) == (spread, every):
            return config.parent
    raise AssertionError(f"no run with spread {spread} and every {every}")


def test_identical_curvatures_end_every_schedule_at_the_same_average(sweep: Path) -> None:
    """With equal A_m a step is an affine map with one linear part for every worker, so
    averaging commutes with it: the same draws give the same final average (up to rounding)
    for every H, around w* = mean(c_m), the exact counterpart of the fixed point staying at
    w*. With differing A_m the same comparison tells the schedules apart."""
    same = {every: _finals(_point(sweep, 0.0, every)) for every in (1, 5, "end")}
    assert same[1].size == SWEEP_TRIALS
    np.testing.assert_allclose(same[5], same[1], rtol=1e-9)
    np.testing.assert_allclose(same["end"], same[1], rtol=1e-9)
    differ = {every: _finals(_point(sweep, 0.8, every)) for every in (1, "end")}
    assert np.all(np.abs(differ["end"] / differ[1] - 1.0) > 1e-3)


@pytest.mark.slow
def test_processes_resume_and_nodes_give_the_serial_numbers(tmp_path: Path) -> None:
    """2 nodes x 2 workers: worker processes killed mid-run and resumed from the checkpoint
    give the serial run's trace bit for bit, and so does one node of 4 workers (the
    workers' quadratics are numbered over all nodes, not per node)."""
    config = _config(
        tmp_path / "c.yaml", nodes=2, workers=2, backend="processes", objective={"beta": 0.2},
        averaging={"every": 5, "global_every": 20}, checkpoint={"every": 4},
    )  # fmt: skip
    cut = tmp_path / "cut"
    crashed = run_cli("run", str(config), "--out", str(cut), env={FAULT_ENV: "3:130:sigkill"})
    assert crashed.returncode == 1, crashed.stderr
    assert (cut / "h" / "checkpoint.npz").exists()
    resumed = run_cli("run", str(config), "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    whole = _run(config, tmp_path / "whole", "backend=serial")
    assert numbers(cut / "h") == numbers(whole)
    flat = _run(config, tmp_path / "flat", "backend=serial", "nodes=1", "workers=4",
                "averaging.global_every=null", "averaging.every=20")  # fmt: skip
    # Every 20 steps globally in both; the hierarchy's in-node rounds in between differ, so
    # compare the flat run with a two-node run that averages only globally.
    two = _run(config, tmp_path / "two", "backend=serial", "averaging.global_every=null",
               "averaging.every=20")  # fmt: skip
    # Two nodes sum their node sums, one node sums the four rows in order: the same numbers
    # but for rounding (per-node numbering would give other workers other problems).
    for column in ("dist_opt_sq", "loss", "subopt", "variance"):
        np.testing.assert_allclose(_column(flat, column), _column(two, column), rtol=1e-12)
    # The global objective is the workers' mean: its minimum f* = loss - subopt is above 0.
    assert np.all(_finals(flat, "loss") - _finals(flat, "subopt") > 1e-3)


def _column(run_dir: Path, column: str) -> np.ndarray:
    return np.array([float(row[column]) for row in read_trace(run_dir / "trace.csv")])


@pytest.mark.parametrize(
    ("objective", "key"),
    [
        ({"zeta": -0.5}, "objective.zeta"),
        ({"curvature_spread": 1.0}, "objective.curvature_spread"),
        ({"curvature_spread": -0.1}, "objective.curvature_spread"),
        ({"curvature_spread": "wide"}, "objective.curvature_spread"),
    ],
)
def test_bad_heterogeneity_is_one_line_and_exit_2(
    tmp_path: Path, objective: dict[str, Any], key: str
) -> None:
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    in_process = objective != {"zeta": -0.5}
    _refused(_config(tmp_path / "c.yaml", objective=objective), tmp_path / "out", key, in_process)


@pytest.mark.parametrize("key", ["zeta", "curvature_spread"])
def test_heterogeneity_keys_on_another_objective_are_refused(tmp_path: Path, key: str) -> None:
    config = _config(
        tmp_path / "c.yaml", objective={"kind": "least_squares", key: 0.5},
        data={"kind": "gaussian_linear", "n": 100, "d": 4},
    )  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    raw["objective"] = {"kind": "least_squares", key: 0.5}
    config.write_text(yaml.safe_dump(raw))
    _refused(config, tmp_path / "out", f"objective.{key}", in_process=key != "zeta")


def _refused(config: Path, out: Path, key: str, in_process: bool = False) -> None:
    command = ("run", str(config), "--out", str(out))
    done = cli_in_process(*command) if in_process else run_cli(*command)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], done.stderr
    assert not out.exists()


def test_plot_final_draws_h_against_the_final_distance_with_its_theory(
    sweep: Path, tmp_path: Path
) -> None:
    """``parsgd plot --kind final``: one point per H (one-shot at H = steps), one line per
    curvature spread; the points are the trials' mean final values and the dashed line the
    theory at each run's last step."""
    figure = tmp_path / "final.png"
    drawn = run_cli("plot", str(sweep), "-o", str(figure), "--kind", "final", "--y",
                    "dist_opt_sq", "--theory", "--by", "objective.curvature_spread")  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    assert figure.stat().st_size > 10_000 and "warning" not in drawn.stderr
    series, notes = compute_finals(find_runs([sweep]), x_key="averaging.every",
                                   y="dist_opt_sq", by=["objective.curvature_spread"],
                                   theory=True)  # fmt: skip
    assert not notes and [s.values for s in series] == [(0.0,), (0.8,)]
    for line in series:
        assert line.positions.tolist() == [1.0, 5.0, float(SWEEP_STEPS)]
        assert line.trials.tolist() == [SWEEP_TRIALS] * 3 and line.theory is not None
        spread = float(line.values[0])  # type: ignore[arg-type]
        for j, every in enumerate((1, 5, "end")):
            assert line.mean[j] == pytest.approx(_finals(_point(sweep, spread, every)).mean(),
                                                 rel=1e-12)  # fmt: skip
            h = SWEEP_STEPS if every == "end" else int(every)
            expected = _expected(h, 1.0, steps=SWEEP_STEPS, curvature_spread=spread)
            assert line.theory[j] == pytest.approx(expected.dist_opt_sq[0], rel=1e-12)
    for bad in (["--x", "data.kind"], ["--target", "0.1"]):
        cli = run_cli if bad[0] == "--x" else cli_in_process  # one through a subprocess
        refused = cli("plot", str(sweep), "-o", str(tmp_path / "x.png"), "--kind",
                      "final", *bad)  # fmt: skip
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "x.png").exists()


def test_stiffest_worker_sets_the_stability_warning_and_single_is_warned(tmp_path: Path) -> None:
    """Step 1.2 is stable for the spectrum 1 .. 0.25 but not for a worker whose curvature
    spread lifts an eigenvalue to 1.7; method single runs only worker 0's quadratic."""
    config = _config(tmp_path / "c.yaml", trials=1, sgd={"steps": 10}, eval={"every": 10})
    steep = run_cli("run", str(config), "--out", str(tmp_path / "a"), "--set",
                    "sgd.step_size=1.2")  # fmt: skip
    assert steep.returncode == 0 and "too large for this quadratic" in steep.stderr
    alone = run_cli("run", str(config), "--out", str(tmp_path / "b"), "--set",
                    "sgd.step_size=1.2", "--set", "objective.curvature_spread=0.0",
                    "--set", "method=single")  # fmt: skip
    assert alone.returncode == 0 and "too large" not in alone.stderr
    assert "minimises worker 0's quadratic" in alone.stderr
