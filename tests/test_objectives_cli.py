"""Every objective's example config runs through ``parsgd run`` on both backends, its loss
goes down, and the serial and processes backends write the same numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli

from parsgd.engine.rundir import read_trace

TIMING_COLUMNS = ("wall_s", "compute_s", "sync_wait_s")
CONFIGS = ["least_squares", "logistic", "hinge", "softmax", "quadratic", "pca", "mlp"]
# Keep each run short: the point is that it runs, learns and agrees across backends.
SHORT = ["--set", "sgd.steps=600", "--set", "eval.every=200", "--set", "trials=2"]


# Other data sources for the same objectives: streams for pca and logistic, planted labels
# for the mlp.
VARIANTS = {
    "pca-stream": ("pca", ["data.stream=true"]),
    "mlp-planted": ("mlp", ["data={kind: logistic_planted, n: 2000, d: 10}", "eval.every=100"]),
    "logistic-stream": ("logistic", ["data={kind: logistic_planted, d: 10, stream: true}"]),
}


def _run(config: str, backend: str, out: Path, *overrides: str) -> list[dict[str, str]]:
    sets = [arg for item in overrides for arg in ("--set", item)]
    result = run_cli(
        "run", f"configs/{config}.yaml", "--set", f"backend={backend}", "--set", "name=r",
        *SHORT, *sets, "--out", str(out / backend),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return read_trace(out / backend / "r" / "trace.csv")


@pytest.mark.parametrize("case", CONFIGS + list(VARIANTS))
def test_config_runs_learns_and_backends_agree(case: str, tmp_path: Path) -> None:
    config, overrides = VARIANTS.get(case, (case, []))
    serial = _run(config, "serial", tmp_path, *overrides)
    processes = _run(config, "processes", tmp_path, *overrides)
    for trial in ("0", "1"):
        rows = [r for r in serial if r["trial"] == trial]
        # Suboptimality where f* is known: pca's loss carries a large constant E||x||^4 / 4.
        column = "subopt" if rows[0]["subopt"] else "loss"
        assert float(rows[-1][column]) < 0.8 * float(rows[0][column]), (config, rows)
    assert len(serial) == len(processes)
    for a, b in zip(serial, processes, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING_COLUMNS} == {
            k: v for k, v in b.items() if k not in TIMING_COLUMNS
        }
    saved = yaml.safe_load((tmp_path / "serial" / "r" / "config.yaml").read_text())
    assert saved["objective"]["kind"] == config


def test_every_objective_has_an_example_config() -> None:
    kinds = {
        yaml.safe_load(p.read_text())["objective"]["kind"]
        for p in (ROOT / "configs").glob("*.yaml")
    }
    assert set(CONFIGS) <= kinds
