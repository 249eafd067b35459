"""Momentum (issue 17 parts 3 and 5): the compiled step against a naive loop, the exact
check (M workers averaging every step with their buffers == one worker with mini-batches of
M on the same samples, to 1e-12), the three averaging.momentum modes, and CLI runs: serial
== processes and resume == uninterrupted, bit for bit, with the buffers in the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from backend_pairs import Pairs, pair_traces, run_on_both_backends
from conftest import run_cli
from helpers import make_config, numbers

from parsgd.config.spec import RunSpec
from parsgd.data.shared import LocalArena
from parsgd.engine.rundir import read_trace
from parsgd.engine.runner import run_experiment
from parsgd.engine.worker import FAULT_ENV
from parsgd.problems.registry import build_problem
from parsgd.problems.softmax import SoftmaxPool
from parsgd.problems.steps import advance
from parsgd.rng import StepStream


@pytest.mark.parametrize("nesterov", [False, True])
def test_the_compiled_momentum_step_matches_a_naive_loop(nesterov: bool) -> None:
    rng = np.random.default_rng(1)
    n, p, K, steps, beta, l2 = 50, 4, 3, 40, 0.7, 0.05
    X, y = rng.standard_normal((n, p)), rng.integers(0, K, n)
    problem = SoftmaxPool(X, y, K, l2, 2)
    u = rng.random((steps, 2))
    etas = np.linspace(0.1, 0.02, steps)
    row = np.zeros(2 * K * p)
    advance(problem.step_kernel().data, 0, row, u, etas, beta, nesterov)
    W, V = np.zeros((K, p)), np.zeros((K, p))
    for t in range(steps):
        G = l2 * W
        for i in np.minimum((u[t] * n).astype(int), n - 1):
            z = W @ X[i]
            q = np.exp(z - z.max())
            q /= q.sum()
            q[y[i]] -= 1.0
            G = G + np.outer(q, X[i]) / 2
        V = beta * V + G
        W = W - etas[t] * (G + beta * V if nesterov else V)
    np.testing.assert_allclose(row[: K * p], W.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(row[K * p :], V.ravel(), rtol=1e-12, atol=1e-14)


def _losses(result_dir: Path) -> np.ndarray:
    return np.array([float(r["loss"]) for r in read_trace(result_dir / "trace.csv")])


@pytest.mark.parametrize("nesterov", [False, True])
def test_workers_averaging_every_step_equal_one_worker_with_mini_batches(
    tmp_path: Path, nesterov: bool
) -> None:
    """At every 1 with averaging.momentum average, M workers with momentum are one worker
    doing mini-batch momentum SGD with batch M on the same samples: sample k of step t is
    worker k's. The reference runs the same compiled step on the M workers' uniforms."""
    M, steps, beta = 4, 200, 0.8
    config = make_config(
        workers=M, trials=1, sgd__steps=steps, averaging__every=1, eval__every=20,
        sgd__momentum=beta, sgd__nesterov=str(nesterov).lower(), averaging__momentum="average",
        objective__l2=0.01, backend="serial",
    )  # fmt: skip
    result = run_experiment(config, tmp_path)
    assert result.status == "completed"
    batch = make_config(workers=1, sgd__batch_size=M, objective__l2=0.01)
    problem = build_problem(RunSpec.from_resolved(batch), LocalArena())
    u = np.stack([StepStream(config["seed"], 0, k, 1).uniforms(0, steps)[:, 0] for k in range(M)])
    u = np.ascontiguousarray(u.T)  # step t: worker 0's, 1's, ... uniforms: one batch of M
    row = np.zeros(2 * problem.d)
    expected = [problem.loss(row[: problem.d])]
    for start in range(0, steps, 20):
        etas = np.full(20, config["sgd"]["step_size"])
        advance(problem.step_kernel().data, 0, row, u[start : start + 20], etas, beta, nesterov)
        expected.append(problem.loss(row[: problem.d]))
    np.testing.assert_allclose(_losses(result.directory), expected, rtol=1e-12)
    # Power: without momentum, or with the other form, the same run differs by far more.
    plain = run_experiment({**config, "sgd": {**config["sgd"], "momentum": 0.0,
                            "nesterov": False}}, tmp_path / "plain")  # fmt: skip
    assert np.max(np.abs(_losses(plain.directory) / expected - 1)) > 1e-3


def test_the_three_averaging_momentum_modes(tmp_path: Path) -> None:
    """At every step: reset zeroes the buffers each round, so momentum SGD is plain SGD;
    keep and average give the same averaged model (the mean buffer follows the same
    linear recursion). At every 10 the three differ."""
    base = dict(workers=3, trials=1, sgd__steps=120, eval__every=20, backend="serial",
                sgd__momentum=0.6)  # fmt: skip
    runs = {}
    for every in (1, 10):
        for mode in ("average", "reset", "keep"):
            config = make_config(averaging__every=every, averaging__momentum=mode, **base)
            runs[every, mode] = _losses(
                run_experiment(config, tmp_path / f"{every}{mode}").directory
            )
        plain = make_config(averaging__every=every, **{**base, "sgd__momentum": 0.0})
        runs[every, "plain"] = _losses(run_experiment(plain, tmp_path / f"{every}plain").directory)
    np.testing.assert_allclose(runs[1, "reset"], runs[1, "plain"], rtol=1e-12)
    np.testing.assert_allclose(runs[1, "keep"], runs[1, "average"], rtol=1e-12)
    assert np.max(np.abs(runs[1, "average"] / runs[1, "plain"] - 1)) > 1e-3
    finals = {mode: runs[10, mode][-1] for mode in ("average", "reset", "keep", "plain")}
    assert len(set(finals.values())) == 4, finals


# -- through the command line --------------------------------------------------------------


def _config(path: Path, **sgd: object) -> Path:
    config = {
        "name": "t",
        "seed": 2,
        "trials": 2,
        "workers": 2,
        "data": {"kind": "logistic_planted", "n": 500, "d": 6},
        "objective": {"kind": "softmax", "l2": 0.01},
        "sgd": {"steps": 300, "step_size": 0.05, "momentum": 0.5, **sgd},
        "averaging": {"every": 10, "momentum": "keep"},
        "eval": {"every": 50},
        "checkpoint": {"every": 3},
    }
    path.write_text(yaml.safe_dump(config))
    return path


MODES = [("average", False), ("reset", True), ("keep", False)]


@pytest.fixture(scope="module")
def mode_pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    """Every (mode, nesterov) on both backends, by one ``parsgd sweep``
    (``backend_pairs.py``)."""
    root = tmp_path_factory.mktemp("modes")
    cases = {}
    for mode, nesterov in MODES:
        case = yaml.safe_load(_config(root / "c.yaml", nesterov=nesterov).read_text())
        case["averaging"]["momentum"] = mode  # what --set averaging.momentum=MODE sets
        cases[f"{mode}-{nesterov}"] = case
    return run_on_both_backends(root, cases)


@pytest.mark.parametrize(("mode", "nesterov"), MODES)
def test_serial_and_processes_agree_bit_for_bit(
    mode_pairs: Pairs, mode: str, nesterov: bool
) -> None:
    case = f"{mode}-{nesterov}"
    serial, processes = pair_traces(mode_pairs, case)
    assert len(serial) == 14 and serial == processes
    saved = yaml.safe_load((mode_pairs[(case, "serial")][0] / "config.yaml").read_text())
    assert saved["sgd"]["momentum"] == 0.5 and saved["sgd"]["nesterov"] is nesterov
    assert saved["averaging"]["momentum"] == mode


def test_resume_after_a_crash_carries_the_buffers_and_equals_the_uninterrupted_run(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path / "c.yaml", nesterov=True)
    cut = tmp_path / "cut"
    crashed = run_cli("run", str(config), "--out", str(cut), env={FAULT_ENV: "1:200:sigkill"})
    assert crashed.returncode == 1, crashed.stderr
    with np.load(cut / "t" / "checkpoint.npz") as saved:
        W = saved["W"]
    d = 2 * 6  # softmax, 2 classes x 6 features
    assert W.shape == (2, 2 * d) and np.any(W[:, d:] != 0.0)  # models and their buffers
    assert not np.array_equal(W[0, d:], W[1, d:])  # keep: each worker's own buffer
    resumed = run_cli("run", str(config), "--out", str(cut), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((cut / "t" / "run.json").read_text())["resumed_from"] is not None
    whole = run_cli("run", str(config), "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    assert numbers(cut / "t") == numbers(tmp_path / "whole" / "t")


_EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", _EXAMPLES, ids=lambda p: p.stem)
def test_every_objective_runs_momentum_in_its_compiled_loop(tmp_path: Path, path: Path) -> None:
    """Each example config (one per objective, pool or stream) with momentum: the run
    completes, its numbers differ from plain SGD's, and at every step with reset they are
    plain SGD's again (to rounding): the probe's g is each objective's own gradient."""
    from parsgd.config.load import load_config

    sets = ["trials=1", "workers=2", "backend=serial", "sgd.steps=60", "eval.every=20",
            "averaging.every=1"]  # fmt: skip
    losses = {}
    for name, extra in [
        ("plain", []),
        ("average", ["sgd.momentum=0.5", "averaging.momentum=average"]),
        ("reset", ["sgd.momentum=0.5", "averaging.momentum=reset"]),
    ]:
        config = load_config(path, sets + extra + [f"name={name}"])
        result = run_experiment(config, tmp_path)
        assert result.status == "completed", result.reason
        losses[name] = _losses(result.directory)
    assert np.all(np.isfinite(losses["average"]))
    assert np.max(np.abs(losses["average"] - losses["plain"])) > 1e-9
    np.testing.assert_allclose(losses["reset"], losses["plain"], rtol=1e-9)


def test_no_plain_sgd_closed_form_is_drawn_for_a_momentum_run() -> None:
    from parsgd.analysis.theory_curves import theory_curve
    from parsgd.config.load import load_config

    root = Path(__file__).resolve().parent.parent / "configs"
    plain = load_config(root / "quadratic.yaml", ["workers=2"])
    steps = np.arange(0, 100, 10)
    assert theory_curve(plain, "dist_opt_sq", steps) is not None
    momentum = load_config(root / "quadratic.yaml", ["workers=2", "sgd.momentum=0.5"])
    assert theory_curve(momentum, "dist_opt_sq", steps) is None
