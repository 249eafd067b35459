"""The run spec: built once at the boundary, frozen, and hashing as the config always did."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_cli, write_config

from parsgd.config.load import SCHEMA, load_config, resolve, spec_of_saved, validate
from parsgd.config.schema import Section
from parsgd.config.spec import (
    AveragingSpec,
    CheckpointSpec,
    EvalSpec,
    RunSpec,
    SgdSpec,
    config_hash,
)
from parsgd.schedules import AveragingSchedule, StepSize

# Hashes of these configs as parsgd computed them before the spec existed (they name the
# checkpoints and run.json of existing run directories, which --resume compares): the spec
# must hash the same YAML to the same value.
_PINNED = {
    "a": (
        "name: a\nworkers: 3\nmethod: single\n"
        "sgd: {steps: 200, step_size: {kind: cosine, eta0: 0.05, min: 0.001}}\n"
        "averaging: {every: 10, growth: 1.5}\neval: {every: 20}\n",
        "14bdf77131f02d21",
    ),
    "b": (
        "objective: {kind: quadratic, d: 4, eigenvalues: [1.0, 0.5, 0.25, 0.1], beta: 0.5}\n"
        "workers: 2\nnodes: 2\nbackend: serial\nsgd: {steps: 100, step_size: 0.05}\n"
        "averaging: {phases: [{steps: 50, every: 5}, {steps: 50, every: end}], "
        "global_every: end}\ncheckpoint: {every: 2}\n",
        "3b6e76a58aad1d3e",
    ),
}


@pytest.mark.parametrize("name", sorted(_PINNED))
def test_the_spec_hashes_a_config_as_before(tmp_path: Path, name: str) -> None:
    text, expected = _PINNED[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    spec = load_config(path)
    assert spec.config_hash == expected
    assert config_hash(spec.to_dict()) == expected  # one function, of the same mapping


def test_the_spec_is_frozen_and_its_sections_read_only() -> None:
    spec = load_config(None, ["objective.kind=quadratic"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.workers = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sgd.batch_size = 8  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.objective.options["d"] = 3  # type: ignore[index]
    # What the spec hands out to write is a copy: changing it changes neither the spec
    # nor its hash.
    written = spec.to_dict()
    written["sgd"]["steps"] = 1
    assert spec.to_dict()["sgd"]["steps"] == spec.sgd.steps == 1000
    assert config_hash(spec.to_dict()) == spec.config_hash != config_hash(written)


def test_the_spec_holds_the_parsed_schedules(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(_PINNED["a"][0])
    spec = load_config(path)
    # method single with the samples budget: 3 workers' samples, so 600 steps on one.
    assert (spec.workers, spec.sgd.steps, spec.eval.every) == (1, 600, 60)
    assert spec.sgd.step_size == StepSize(
        eta0=0.05, kind="cosine", floor=0.001, total_steps=600, every=1000, t0=100.0
    )
    assert spec.averaging.schedule == AveragingSchedule(every=10, growth=1.5)


def test_every_schema_key_has_a_typed_home() -> None:
    """A key added to the schema must be added to the spec too (or this fails, naming it)."""
    top = {name for name, entry in SCHEMA.items() if not isinstance(entry, Section)}
    assert top <= {f.name for f in dataclasses.fields(RunSpec)}, "add the key to RunSpec"
    homes = {
        "sgd": {f.name for f in dataclasses.fields(SgdSpec)},
        "averaging": {f.name for f in dataclasses.fields(AveragingSpec)}
        | {f.name for f in dataclasses.fields(AveragingSchedule)},
        "eval": {f.name for f in dataclasses.fields(EvalSpec)},
        "checkpoint": {f.name for f in dataclasses.fields(CheckpointSpec)},
    }
    for section, names in homes.items():
        entry = SCHEMA[section]
        assert isinstance(entry, Section)
        missing = set(entry.fields) - names
        assert not missing, f"{section}.{sorted(missing)} has no field in the spec"


_SUBSCRIPT = re.compile(r"""\bconfig(\[["']|\.get\()""")
_PARSE = re.compile(r"\b(StepSize|AveragingSchedule)\.from_config\(")


def test_nothing_outside_config_reads_the_config_mapping() -> None:
    """The spec is the only way downstream code sees a run's config; the step size and the
    averaging schedule are parsed in one place, ``RunSpec.from_resolved`` (the validator
    also reads the step size for its L2 rule)."""
    package = ROOT / "parsgd"
    readers, parsers = [], []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if not relative.startswith("parsgd/config/") and relative != "parsgd/schedules.py":
            readers += [f"{relative}: {m.group(0)}" for m in _SUBSCRIPT.finditer(text)]
        if relative not in ("parsgd/config/spec.py", "parsgd/config/load.py"):
            parsers += [f"{relative}: {m.group(0)}" for m in _PARSE.finditer(text)]
    assert readers == []
    assert parsers == []
    # The check itself sees what it looks for.
    assert _SUBSCRIPT.search('steps = config["sgd"]["steps"]')
    assert _PARSE.search("StepSize.from_config(config)")


def test_a_run_writes_the_resolved_config_its_spec_hashes(tmp_path: Path) -> None:
    """Through the command line: config.yaml is the spec's resolved mapping, run.json its
    hash; read back, the saved config gives the same spec; --resume compares that hash."""
    config = write_config(tmp_path / "c.yaml", trials=1, sgd={"steps": 100, "step_size": 0.05})
    out = tmp_path / "out"
    done = run_cli("run", str(config), "--out", str(out), "--set", "backend=serial")
    assert done.returncode == 0, done.stderr
    saved = yaml.safe_load((out / "t" / "config.yaml").read_text())
    record = json.loads((out / "t" / "run.json").read_text())
    spec = load_config(config, ["backend=serial"])
    assert saved == spec.to_dict()
    assert record["config_hash"] == spec.config_hash == config_hash(saved)
    again = spec_of_saved(saved)
    assert again == spec and again.to_dict() == saved
    resumed = run_cli("run", str(config), "--out", str(out), "--set", "backend=serial", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "already completed with this config" in resumed.stdout + resumed.stderr
    changed = run_cli(
        "run", str(config), "--out", str(out), "--set", "backend=serial", "--set", "seed=9",
        "--resume",
    )  # fmt: skip
    assert changed.returncode == 2
    assert f"this one {load_config(config, ['seed=9']).config_hash}" in changed.stderr


def test_a_resolved_mapping_becomes_a_spec_in_one_place() -> None:
    resolved = resolve(validate({"workers": 2, "sgd": {"step_size": 0.02}}))
    spec = RunSpec.from_resolved(resolved)
    assert spec.to_dict() == resolved
    assert spec.renamed("other").config_hash == spec.config_hash  # the name is not hashed
    assert spec.renamed("other").to_dict()["name"] == "other"
    small = spec.with_samples_at_most(64)
    assert small.data.n == 64 and spec.data.n == 10000


def test_a_config_saved_before_a_key_existed_keeps_its_hash() -> None:
    """A run (or sweep plan) written before ``nodes`` and ``averaging.global_every`` existed
    reads back with their defaults, and with the hash its run.json recorded."""
    full = resolve(validate({"workers": 2}))
    old = {k: v for k, v in full.items() if k != "nodes"}
    old["averaging"] = {k: v for k, v in full["averaging"].items() if k != "global_every"}
    spec = spec_of_saved(old)
    assert (spec.nodes, spec.averaging.global_every) == (1, None)
    assert spec.to_dict() == old
    assert spec.config_hash == config_hash(old) == config_hash(full)


def test_a_saved_single_worker_run_with_phases_reads_back_as_written() -> None:
    """method single rescales sgd.steps, so the saved phases no longer add up to it: the
    saved config is taken as written rather than refused."""
    raw = {
        "workers": 2,
        "method": "single",
        "sgd": {"steps": 100},
        "averaging": {"phases": [{"steps": 50, "every": 5}, {"steps": 50, "every": 10}]},
    }
    saved = resolve(validate(raw))
    assert saved["sgd"]["steps"] == 200
    spec = spec_of_saved(saved)
    assert spec.to_dict() == saved and spec.sgd.steps == 200 and spec.workers == 1
