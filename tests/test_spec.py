"""The run spec: built once at the boundary, frozen, and hashing as the config always did."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, write_config

from parsgd.config.files import dump_config
from parsgd.config.kind_specs import (
    DATA_CLASSES,
    OBJECTIVE_CLASSES,
    SHARED,
    MlpObjective,
    Partition,
    QuadraticObjective,
    data_spec,
    objective_spec,
)
from parsgd.config.kinds import DATA_SECTION, OBJECTIVE_SECTION
from parsgd.config.load import SCHEMA, load_config, resolve, spec_of_saved, validate
from parsgd.config.schema import REQUIRED, Section
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


# One config per data and objective kind (but file, whose saved path is the machine's), with
# their hash, and the sha256 (first 16 hex digits) of the config.yaml a run writes and of the
# config as a sweep plan holds it (JSON), all computed by parsgd before the data and objective
# sections were typed: a change here makes existing runs unresumable.
_PINNED_BY_KIND = {
    "default": ("workers: 2\n", "dd0f7b7138d94565", "58de5342955035c9", "4097ce5cebfbfe5f"),
    "stream": (
        "data: {kind: gaussian_linear, d: 6, noise: 0.3, stream: true, seed: 4}\n"
        "workers: 3\nsgd: {steps: 300, step_size: {kind: inverse, eta0: 0.1, t0: 50}}\n"
        "averaging: {at: [10, 100, 250]}\neval: {every: 30}\n",
        "d6f9d59cb00859a0", "b877c939c8b708b9", "7a86131cd454df9e",
    ),
    "mlp": (
        "data: {kind: logistic_planted, n: 500, d: 5, scale: 1.5, partition: {kind: shards}}\n"
        "objective: {kind: mlp, hidden: 8, l2: 0.001}\nworkers: 2\n"
        "sgd: {steps: 200, batch_size: 4, sampling: shuffle, momentum: 0.5}\n"
        "averaging: {every: 20, momentum: average}\n",
        "6cf490bad0f679e8", "2755dfe6841fdf63", "98a684f4fce0ec01",
    ),
    "pca": (
        "data: {kind: pca_spectrum, n: 400, d: 3, eigenvalues: [2.0, 1.0, 0.5]}\n"
        "objective: {kind: pca}\nworkers: 2\nsgd: {init: independent, init_scale: 0.5,"
        " step_size: {kind: step, eta0: 0.05, factor: 0.7, every: 50}}\n",
        "40edf1a5f0658059", "5ec4691821217225", "8a660517e062d099",
    ),
    "softmax": (
        "data: {kind: bundled, name: iris, partition: {kind: dirichlet, alpha: 0.5}}\n"
        "objective: {kind: softmax, l2: 0.01}\nworkers: 3\nseed: 7\n"
        "sgd: {steps: 150, nesterov: true, momentum: 0.9}\n",
        "653e8682b4d0e2c5", "0d510a025d7d06f4", "f07f8bee3bc5d264",
    ),
    "hetero": (
        "data: {kind: none}\nobjective: {kind: quadratic, d: 5, eig_max: 2.0, eig_min: 0.2,"
        " sigma: 0.5, zeta: 1.0, curvature_spread: 0.5}\nworkers: 2\nnodes: 2\n"
        "backend: serial\naveraging: {every: 5, global_every: 20}\n",
        "6498639b1cb63877", "5bcbab82d3dd5d56", "5f2a2ab2d845d726",
    ),
    "hinge": (
        "data: {kind: logistic_planted, stream: true}\nobjective: {kind: hinge, l2: 0.01}\n"
        "workers: 2\nmethod: single\nsingle_budget: steps\n"
        "averaging: {every: 8, warmup: 16, growth: 1.25}\ncheckpoint: {every: 3}\n",
        "469c004cea046587", "ae8cdec0a3bdb515", "9ec761862702000d",
    ),
}  # fmt: skip


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(_PINNED_BY_KIND))
def test_the_typed_sections_leave_hash_and_written_files_as_they_were(
    tmp_path: Path, name: str
) -> None:
    text, hashed, written, planned = _PINNED_BY_KIND[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    spec = load_config(path)
    assert spec.config_hash == hashed
    assert _sha16(dump_config(spec.to_dict())) == written  # config.yaml
    assert _sha16(json.dumps(spec.to_dict(), indent=1)) == planned  # a sweep plan's config
    again = spec_of_saved(yaml.safe_load(dump_config(spec.to_dict())))
    assert again == spec and again.config_hash == hashed
    hash(spec.data), hash(spec.objective)  # lists and mappings (eigenvalues, partition) frozen


def test_the_spec_is_frozen_and_its_sections_read_only() -> None:
    spec = load_config(None, ["objective.kind=quadratic"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.workers = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.sgd.batch_size = 8  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.objective.d = 3  # type: ignore[misc,union-attr]
    assert isinstance(spec.objective, QuadraticObjective)
    hash(spec.data), hash(spec.objective)  # immutable all the way down: no lists, no dicts
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
    # The step size the validator parsed goes into the spec over the resolved steps, as it
    # does when a saved config is read back.
    assert spec_of_saved(spec.to_dict()).sgd.step_size == spec.sgd.step_size


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


@pytest.mark.parametrize(
    ("section", "classes"),
    [(DATA_SECTION, DATA_CLASSES), (OBJECTIVE_SECTION, OBJECTIVE_CLASSES)],
    ids=["data", "objective"],
)
def test_every_kind_has_a_dataclass_with_exactly_its_schema_keys(
    section: Section, classes: dict[str, type]
) -> None:
    """A key added to (or dropped from) a kind in ``config/kinds.py`` must be added to (or
    dropped from) its dataclass in ``config/kind_specs.py``; this fails naming the keys."""
    assert sorted(classes) == sorted(section.kinds), "one dataclass per kind"
    for kind, declared in section.kinds.items():
        cls = classes[kind]
        assert cls.kind == kind
        fields = {f.name for f in dataclasses.fields(cls)}
        assert fields == set(declared), (
            f"{kind}: only in the schema {sorted(set(declared) - fields)}, "
            f"only in {cls.__name__} {sorted(fields - set(declared))}"
        )


_REQUIRED_VALUES = {"path": "x.csv", "name": "iris"}  # the keys without a default


@pytest.mark.parametrize(
    ("section", "build"),
    [(DATA_SECTION, data_spec), (OBJECTIVE_SECTION, objective_spec)],
    ids=["data", "objective"],
)
def test_a_kind_missing_keys_gets_the_schema_defaults_made_immutable(
    section: Section, build: Callable[[dict[str, Any]], object]
) -> None:
    """A section saved before a key existed gets that key's default from the schema (the one
    place defaults live); a key without a default cannot be made up."""
    for kind, declared in section.kinds.items():
        required = {k: _REQUIRED_VALUES[k] for k, f in declared.items() if f.default is REQUIRED}
        typed = build({"kind": kind, **required})
        hash(typed)  # immutable all the way down
        for name, field in declared.items():
            value = getattr(typed, name)
            if field.default is REQUIRED:
                assert value == required[name]
            elif name == "partition":
                assert value == SHARED == Partition("shared", None)
            else:
                assert value == field.default, f"{kind}.{name}"
        if required:
            with pytest.raises(KeyError):
                build({"kind": kind})


def test_downstream_reads_the_kind_s_fields() -> None:
    spec = load_config(None, ["workers=2", "data.kind=logistic_planted", "objective.kind=mlp",
                              "objective.hidden=8", "data.partition.kind=shards"])  # fmt: skip
    objective = spec.objective
    assert isinstance(objective, MlpObjective) and (objective.hidden, objective.l2) == (8, 0.0)
    assert spec.data.partition == Partition("shards", None)
    assert spec.data.kind == "logistic_planted" and spec.to_dict()["objective"]["hidden"] == 8


_SUBSCRIPT = re.compile(r"""\bconfig(\[["']|\.get\()""")
_PARSE = re.compile(r"\b(StepSize|AveragingSchedule)\.from_config\(")


def test_nothing_outside_config_reads_the_config_mapping() -> None:
    """The spec is the only way downstream code sees a run's config; the step size and the
    averaging schedule are parsed in ``config/``: the step size once, by the validator, which
    hands it to the spec (``RunSpec.from_resolved`` parses it from a bare resolved mapping)."""
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
