"""Every objective's example config runs through the command line on both backends (one
``parsgd sweep`` for all, ``backend_pairs.py``), its loss goes down, and the serial and
processes backends write the same numbers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from backend_pairs import Pairs, pair_traces, run_on_both_backends
from conftest import ROOT

from parsgd.config.files import load_yaml
from parsgd.config.load import apply_overrides

CONFIGS = ["least_squares", "logistic", "hinge", "softmax", "quadratic", "pca", "mlp"]
# Keep each run short: the point is that it runs, learns and agrees across backends.
SHORT = ["sgd.steps=600", "eval.every=200", "trials=2"]


# Other data sources for the same objectives: streams for pca and logistic, planted labels
# for the mlp.
VARIANTS = {
    "pca-stream": ("pca", ["data.stream=true"]),
    "mlp-planted": ("mlp", ["data={kind: logistic_planted, n: 2000, d: 10}", "eval.every=100"]),
    "logistic-stream": ("logistic", ["data={kind: logistic_planted, d: 10, stream: true}"]),
}


def _case(case: str) -> dict[str, Any]:
    """The raw config ``parsgd run configs/<objective>.yaml --set ...`` runs for ``case``."""
    config, overrides = VARIANTS.get(case, (case, []))
    sets = ["name=r", *SHORT, *overrides]
    return apply_overrides(load_yaml(ROOT / "configs" / f"{config}.yaml"), sets)


@pytest.fixture(scope="module")
def objective_pairs(tmp_path_factory: pytest.TempPathFactory) -> Pairs:
    """Every case on both backends, by one ``parsgd sweep`` (``backend_pairs.py``)."""
    root = tmp_path_factory.mktemp("objectives")
    return run_on_both_backends(root, {case: _case(case) for case in CONFIGS + list(VARIANTS)})


@pytest.mark.parametrize("case", CONFIGS + list(VARIANTS))
def test_config_runs_learns_and_backends_agree(case: str, objective_pairs: Pairs) -> None:
    config, _ = VARIANTS.get(case, (case, []))
    serial, processes = pair_traces(objective_pairs, case)  # time columns left out
    for trial in ("0", "1"):
        rows = [r for r in serial if r["trial"] == trial]
        # Suboptimality where f* is known: pca's loss carries a large constant E||x||^4 / 4.
        column = "subopt" if rows[0]["subopt"] else "loss"
        assert float(rows[-1][column]) < 0.8 * float(rows[0][column]), (config, rows)
    assert serial == processes
    run_dir = objective_pairs[(case, "serial")][0]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["objective"]["kind"] == config


def test_every_objective_has_an_example_config() -> None:
    kinds = {
        yaml.safe_load(p.read_text())["objective"]["kind"]
        for p in (ROOT / "configs").glob("*.yaml")
    }
    assert set(CONFIGS) <= kinds
