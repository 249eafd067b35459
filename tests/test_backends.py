"""Backends are chosen through the registry alone: a newly registered one is selectable and
runs, with no name compared anywhere else."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_config

from parsgd.config.load import load_config
from parsgd.engine import backends
from parsgd.engine.runner import run_experiment
from parsgd.errors import ConfigError
from tests.helpers import numbers


def test_the_registry_lists_and_loads_the_built_in_backends() -> None:
    assert backends.names()[:2] == ("processes", "serial")
    assert backends.info("processes").shared_memory and not backends.info("serial").shared_memory
    for name in backends.names():
        assert callable(backends.load(name).run)


def test_a_registered_backend_is_selectable_and_runs(tmp_path: Path) -> None:
    config_path = write_config(tmp_path / "c.yaml", trials=1)
    with pytest.raises(ConfigError, match="backend must be one of"):
        load_config(config_path, ["backend=again"])
    backends.register(
        backends.BackendInfo("again", "parsgd.engine.serial", False, False, "serial, again")
    )
    try:
        # The schema asks the registry when it checks the value, so a backend registered
        # after the config module was imported is accepted.
        config = load_config(config_path, ["backend=again"])
        result = run_experiment(config, tmp_path / "again")
    finally:
        backends._REGISTRY.pop("again")
    assert result.status == "completed"
    serial = run_experiment(load_config(config_path, ["backend=serial"]), tmp_path / "serial")
    assert numbers(result.directory) == numbers(serial.directory)
