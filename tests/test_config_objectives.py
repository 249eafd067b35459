"""Config rules for the objectives and data kinds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parsgd.config.load import load_config, resolve, validate
from parsgd.errors import ConfigError


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # An explicit data kind is checked as written (the default follows the objective).
        (
            {"data": {"kind": "gaussian_linear"}, "objective": {"kind": "quadratic"}},
            "data.kind must be one of none for objective",
        ),
        (
            {"data": {"kind": "gaussian_linear"}, "objective": {"kind": "logistic"}},
            "data.kind must be one of logistic_planted, file",
        ),
        (
            {
                "data": {"kind": "pca_spectrum", "d": 3, "eigenvalues": [1.0, 0.5]},
                "objective": {"kind": "pca"},
            },
            "data.eigenvalues must list data.d (3) values; got 2",
        ),
        (
            {"data": {"kind": "none"}, "objective": {"kind": "quadratic", "eig_min": 2.0}},
            "objective.eig_min must be <= objective.eig_max (1)",
        ),
        ({"data": {"kind": "file"}}, "data.path is required"),
        (
            {"data": {"kind": "file", "path": "x", "format": "xls"}},
            "data.format must be one of npz",
        ),
        ({"data": {"kind": "bundled", "name": "mnist"}}, "data.name must be one of breast_cancer"),
        ({"objective": {"l2": 10.0}, "sgd": {"step_size": 0.5}}, "sgd.step_size * objective.l2"),
    ],
)
def test_bad_combinations_name_the_keys(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("objective", "data", "init"),
    [
        ("least_squares", {}, "zeros"),
        ("pca", {"kind": "pca_spectrum"}, "shared"),
        ("mlp", {"kind": "bundled", "name": "iris"}, "shared"),
        ("quadratic", {"kind": "none"}, "zeros"),
    ],
)
def test_default_start_suits_the_objective(objective: str, data: dict, init: str) -> None:
    config = resolve(validate({"objective": {"kind": objective}, "data": data}))
    assert config["sgd"]["init"] == init


def test_quadratic_data_section_has_no_keys() -> None:
    config = resolve(validate({"data": {"kind": "none"}, "objective": {"kind": "quadratic"}}))
    assert config["data"] == {"kind": "none"}


def test_path_from_set_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.yaml").write_text("data: {kind: file, path: in_config.csv}\n")
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(tmp_path / "c.yaml")
    assert config.data.path == str(tmp_path / "in_config.csv")
    config = load_config(tmp_path / "c.yaml", ["data.path=given.csv"])
    assert config.data.path == str(tmp_path.parent / "given.csv")


def test_advisories_for_the_new_objectives() -> None:
    from parsgd.config.advice import advisories
    from parsgd.config.spec import RunSpec

    def spec(raw: dict[str, Any]) -> RunSpec:
        return RunSpec.from_resolved(resolve(validate(raw)))

    quadratic = {"data": {"kind": "none"}, "objective": {"kind": "quadratic", "beta": 5.0}}
    notes = advisories(spec({**quadratic, "sgd": {"step_size": 0.5}}))
    assert any("too large for this quadratic" in n for n in notes)
    notes = advisories(spec({**quadratic, "sgd": {"step_size": 0.001}}))
    assert not any("quadratic" in n for n in notes)
    pca = {"data": {"kind": "pca_spectrum"}, "objective": {"kind": "pca"}}
    notes = advisories(spec({**pca, "sgd": {"init": "zeros"}}))
    assert any("stationary point of pca" in n for n in notes)
