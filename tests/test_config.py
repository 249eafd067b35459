"""The config schema: defaults, overrides, one-line errors naming the key, the hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from parsgd.config.load import apply_overrides, config_hash, load_config, resolve, validate
from parsgd.errors import ConfigError


def test_defaults_fill_every_key() -> None:
    config = resolve(validate({}))
    assert config["sgd"]["steps"] == 1000
    assert config["averaging"]["every"] == 10
    assert config["data"] == {
        "kind": "gaussian_linear",
        "partition": {"kind": "shared", "alpha": None},
        "n": 10000,
        "d": 10,
        "noise": 0.1,
        "stream": False,
        "seed": 0,
    }
    assert isinstance(config["workers"], int) and config["workers"] >= 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"workers": 0}, 'workers must be an integer >= 1 and <= 4096 or "auto"; got 0'),
        (
            {"averaging": {"every": -1}},
            'averaging.every must be an integer >= 1 or "end" or null; got -1',
        ),
        (
            {"sgd": {"step_size": "fast"}},
            "sgd.step_size must be a finite number > 0 or a mapping with keys kind, eta0",
        ),
        ({"sgd": {"steps": 2.5}}, "sgd.steps must be an integer >= 1"),
        ({"trials": True}, "trials must be an integer >= 1; got true"),
        ({"backend": "gpu"}, 'backend must be one of processes, serial, mpi; got "gpu"'),
        (
            {"data": {"kind": "gaussian_linear", "nn": 5}},
            "unknown key data.nn; did you mean data.n?",
        ),
        ({"avraging": {"every": 3}}, "unknown key avraging; did you mean averaging?"),
        ({"data": [1, 2]}, "data must be a mapping"),
        ({"averaging": {"every": 5, "at": [1, 2]}}, "averaging takes one of every, at, phases"),
        (
            {"sgd": {"steps": 10}, "averaging": {"at": [5, 20]}},
            "averaging.at must list steps <= sgd.steps",
        ),
        ({"data": {"n": 4}, "sgd": {"batch_size": 8}}, "sgd.batch_size must be <= data.n (4)"),
    ],
)
def test_bad_values_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_all_errors_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        validate({"workers": 0, "trials": -1, "bogus": 1})
    text = str(info.value)
    assert "workers" in text and "trials" in text and "unknown key bogus" in text


def test_overrides_are_yaml_typed_and_create_sections() -> None:
    raw = apply_overrides({}, ["averaging.every=end", "workers=3", "sgd.step_size=1e-3"])
    config = validate(raw)
    assert config["averaging"]["every"] == "end"
    assert config["workers"] == 3
    assert config["sgd"]["step_size"] == pytest.approx(1e-3)


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1"])
def test_malformed_override(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        apply_overrides({}, [bad])


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsgd: {steps: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+"):
        load_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_hash_ignores_name_and_backend_but_not_numbers() -> None:
    base = resolve(validate({"workers": 2}))
    renamed = resolve(validate({"workers": 2, "name": "other", "backend": "serial"}))
    changed = resolve(validate({"workers": 2, "seed": 1}))
    assert config_hash(base) == config_hash(renamed)
    assert config_hash(base) != config_hash(changed)


def test_slurm_allocation_caps_auto_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert resolve(validate({}))["workers"] == 1
