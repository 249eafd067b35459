"""Wall-clock projected onto a network (``--network``): the alpha-beta ring all-reduce cost,
the projection of every trace row, calibration from ``parsgd bench`` rows, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_in_process, run_cli

from parsgd.analysis.network import (
    calibrate,
    model_size,
    parse_network,
    project_runs,
    ring_allreduce_s,
)
from parsgd.analysis.runs import find_runs
from tests.small_sweep import make_small_sweep

SLOW = "latency_us=1000,bandwidth_gbps=1,nodes=2"
FAST = "latency_us=0.5,bandwidth_gbps=400,nodes=2"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_sweep(tmp_path_factory.mktemp("network"))


def test_ring_allreduce_cost_is_the_alpha_beta_formula() -> None:
    # 8 ranks, 1 MB, 50 us, 10 Gb/s: 14 latencies and 2 x 7/8 of the bytes over the link.
    assert ring_allreduce_s(8, 1e6, 50e-6, 10e9 / 8) == pytest.approx(14 * 50e-6 + 1.75e6 / 1.25e9)
    assert ring_allreduce_s(1, 1e6, 50e-6, 1e9) == 0.0
    network = parse_network("latency_us=50,bandwidth_gbps=10,nodes=4,local_latency_us=2")
    # 8 workers on 4 nodes: 2 per node share memory (the local level), then 4 nodes.
    local = ring_allreduce_s(2, 800.0, 2e-6, 100e9 / 8)
    assert network.round_s(100, 8, False) == pytest.approx(local)
    assert network.round_s(100, 8, True) == pytest.approx(
        local + ring_allreduce_s(4, 800.0, 50e-6, 10e9 / 8)
    )


def test_every_row_is_compute_plus_syncs_times_one_round(sweep: Path) -> None:
    runs = find_runs([sweep])
    assert {model_size(run) for run in runs} == {20}  # data.d of the least-squares stream
    network = parse_network(SLOW)
    round_s = ring_allreduce_s(2, 8 * 20, 1e-3, 1e9 / 8)  # 2 workers on 2 nodes: 1 each
    for run, projected in zip(runs, project_runs(runs, network), strict=True):
        expected = run.trace["compute_s"] + run.trace["syncs"] * round_s
        np.testing.assert_allclose(projected.trace["wall_s"], expected, rtol=1e-12)
        assert run.trace["wall_s"] is not projected.trace["wall_s"]  # the run is untouched
        assert np.all(np.diff(projected.trace["wall_s"][projected.trace["trial"] == 0]) >= 0)


def test_calibration_recovers_alpha_and_beta(tmp_path: Path) -> None:
    alpha, beta = 3e-6, 2e9
    rows = [
        {"measure": f"averaging round M=2 d={d:.0e}", "unit": "us",
         "baseline": "MPI Allreduce (2 ranks)",
         "baseline_value": ring_allreduce_s(2, 8 * d, alpha, beta) * 1e6}
        for d in (10, 1e3, 1e5, 1e6)
    ]  # fmt: skip
    rows.append({"measure": "start-up", "unit": "s", "baseline": "", "baseline_value": None})
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"rows": rows}))
    fitted_alpha, fitted_beta = calibrate(path)
    assert fitted_alpha == pytest.approx(alpha, rel=1e-6)
    assert fitted_beta == pytest.approx(beta, rel=1e-6)
    network = parse_network(f"calibrate={path},nodes=8")
    assert (
        network.latency_s == pytest.approx(alpha, rel=1e-6) and "fit to bench.json" in network.text
    )
    # The committed benchmark of this machine calibrates too (positive alpha and beta).
    real = Path(__file__).resolve().parent.parent / "docs" / "bench" / "2026-11-24-calm.json"
    assert min(calibrate(real)) > 0


def test_report_and_figure_say_projection_and_the_network_moves_the_answer(
    sweep: Path, tmp_path: Path
) -> None:
    seconds = {}
    for name, spec in (("slow", SLOW), ("fast", FAST)):
        done = run_cli("report", str(sweep), "--target", "loss<=0.3", "--network", spec)
        assert done.returncode == 0, done.stderr
        assert (
            "t_projected(loss<=0.3)_s" in done.stdout and "PROJECTION onto 2 nodes" in done.stdout
        )
        with (sweep / "report.csv").open(newline="") as handle:
            rows = {r["run"]: r for r in csv.DictReader(handle)}
        seconds[name] = {k: float(r["time_to_target_s"]) for k, r in rows.items()}
    # Averaging every step pays 200 rounds: on the slow network it is far the slowest to the
    # target; the fast network shrinks its handicap (power: a projection that ignored the
    # network would give the same ratio twice).
    slow, fast = seconds["slow"], seconds["fast"]
    assert slow["ev1"] > 5 * slow["evend"]
    assert slow["ev1"] / slow["evend"] > 3 * fast["ev1"] / fast["evend"]
    figure = tmp_path / "net.svg"
    done = run_cli(
        "plot", str(sweep), "-o", str(figure), "--kind", "wallclock", "--target", "0.3",
        "--network", SLOW,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PROJECTION" in figure.read_text()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("latency_us=50,nodes=8", "--network needs bandwidth_gbps"),
        ("latency_us=50,bandwidth_gbps=10", "--network needs nodes=N"),
        ("latency=50,bandwidth_gbps=10,nodes=8", "--network takes KEY=VALUE pairs"),
        ("latency_us=-1,bandwidth_gbps=10,nodes=8", "latency_us must be > 0"),
        ("calibrate=nowhere.json,nodes=8", "not a parsgd bench JSON file"),
    ],
)
def test_bad_network_is_one_line_exit_2(
    sweep: Path, tmp_path: Path, spec: str, message: str
) -> None:
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    cli = run_cli if spec == "latency_us=50,nodes=8" else cli_in_process
    done = cli(
        "plot", str(sweep), "-o", str(tmp_path / "f.png"), "--kind", "wallclock", "--target",
        "0.3", "--network", spec,
    )  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()
