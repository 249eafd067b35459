"""Paired comparisons (``--paired-with``): the schedules of a sweep share their draws, so
the trial-by-trial difference is tighter than the marginal bands; pairing is refused where
the draws differ."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process, run_cli, write_config

from parsgd.analysis.curves import compute_paired_curves
from parsgd.analysis.paired import ci95, final_differences, parse_reference, split_runs, welch_ci95
from parsgd.analysis.runs import find_runs
from parsgd.engine.rundir import read_trace

STEPS = 150


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H = 1, 10, one-shot on one pool, 8 trials, still on the way to the optimum: the
    trials differ mostly through their draws, which the schedules share."""
    root = tmp_path_factory.mktemp("paired")
    config = write_config(
        root / "base.yaml", backend="serial", trials=8,
        data={"n": 1000, "d": 10, "noise": 0.5}, sgd={"steps": STEPS, "step_size": 0.01},
        eval={"every": 30},
    )  # fmt: skip
    out = root / "sweep"
    for every in ("1", "10", "end"):
        done = run_cli(
            "run", str(config), "--set", f"averaging.every={every}", "--set", f"name=ev{every}",
            "--out", str(out),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    return out


def _final_losses(run_dir: Path) -> np.ndarray:
    rows = read_trace(run_dir / "trace.csv")
    return np.array([float(r["loss"]) for r in rows if r["step"] == str(STEPS)])


def test_paired_interval_is_narrower_than_the_marginal_one(sweep: Path) -> None:
    done = run_cli("report", str(sweep), "--paired-with", "averaging.every=1")
    assert done.returncode == 0, done.stderr
    assert "d_loss(vs averaging.every=1)" in done.stdout
    with (sweep / "report.csv").open(newline="") as handle:
        rows = {r["run"]: r for r in csv.DictReader(handle)}
    assert rows["ev1"]["paired_diff"] == "reference"
    reference = _final_losses(sweep / "ev1")
    for name in ("ev10", "evend"):
        row = rows[name]
        # The difference is the trial-by-trial one, computed here from the traces.
        expected = _final_losses(sweep / name) - reference
        assert float(row["paired_diff"]) == pytest.approx(expected.mean(), rel=1e-12)
        assert float(row["paired_ci95"]) == pytest.approx(ci95(expected), rel=1e-12)
        # Shared draws: the paired interval is several times narrower than the Welch one.
        assert 3 * float(row["paired_ci95"]) < float(row["unpaired_ci95"]), row
    # Power: pair trial k with the reference's trial k+1 (draws not shared) and the
    # advantage is gone, so the check above can fail.
    for name in ("ev10", "evend"):
        mispaired = _final_losses(sweep / name) - np.roll(reference, 1)
        welch = welch_ci95(_final_losses(sweep / name), reference)
        assert ci95(mispaired) > welch / 3


def test_paired_curves_start_at_zero_and_carry_the_interval(sweep: Path, tmp_path: Path) -> None:
    runs = find_runs([sweep])
    reference = parse_reference("averaging.every=1")
    curves = compute_paired_curves(
        runs, x="step", y="loss", by=["averaging.every"], reference=reference
    )
    assert [c.label for c in curves] == ["every 10 steps", "one-shot"]
    for curve in curves:
        assert curve.trials == 8 and curve.mean[0] == 0.0  # the same start, the same draws
        assert np.all(curve.low <= curve.mean) and np.all(curve.mean <= curve.high)
    references, others = split_runs(runs, reference)
    differences, _, _ = final_differences(others[-1:], references, reference, "loss")
    assert curves[-1].mean[-1] == pytest.approx(differences.mean(), rel=1e-12)
    done = run_cli(
        "plot", str(sweep), "-o", str(tmp_path / "p.png"), "--paired-with", "averaging.every=1"
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_pairing_is_refused_where_draws_are_not_shared(sweep: Path, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(sweep / "ev1", mixed / "ev1")
    config = (sweep / "ev10" / "config.yaml").read_text()
    done = run_cli(
        "run", str(sweep / "ev10" / "config.yaml"), "--set", "seed=99", "--set", "name=ev10",
        "--out", str(mixed),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert config  # the copy ran from the same settings but another seed
    for command in ("report", "plot"):
        extra = ["-o", str(tmp_path / "p.png")] if command == "plot" else []
        # report through a subprocess (the command line's exit and stderr), plot through the
        # CLI's main in this process: the same checks, without a second start-up.
        cli = run_cli if command == "report" else cli_in_process
        done = cli(command, str(mixed), *extra, "--paired-with", "averaging.every=1")
        assert done.returncode == 2
        assert "shares no random draws" in done.stderr and "seed" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.png").exists() and not (mixed / "report.csv").exists()
    done = cli_in_process("report", str(sweep), "--paired-with", "averaging.every=7")
    assert done.returncode == 2 and "no run has averaging.every=7" in done.stderr
