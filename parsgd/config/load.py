"""The config: its declared schema, ``--set`` overrides, validation and resolution.

Validation happens once, here, at the boundary, and ``load_config`` hands the result on as
a ``RunSpec`` (``parsgd.config.spec``, which also holds the hash); the engine trusts what it
gets. Every error found in one pass is reported in one line, each naming its dotted key.
Reading the YAML itself is ``parsgd.config.files``; the rules that tie keys together are
``parsgd.config.rules``.

``data`` makes the samples and ``objective`` the loss (``parsgd.config.kinds`` declares both
sections and ``DATA_FOR_OBJECTIVE``, which go together). The ``quadratic`` objective is
self-contained: its stochastic gradient is defined by its own Gaussian noise, not by
samples, so its dimension and spectrum are objective keys and it takes
``data: {kind: none}`` (any other data kind is an error, not silently ignored).
"""

from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from parsgd.config.files import (
    absolute_path,
    anchor_data_path,
    load_yaml,
    parse_yaml,
)
from parsgd.config.files import dump_config as dump_config  # re-exported
from parsgd.config.hetero import (
    AVERAGING_FIELDS,
    SGD_FIELDS,
)
from parsgd.config.kinds import DATA_SECTION, OBJECTIVE_SECTION, RANDOM_START_OBJECTIVES
from parsgd.config.limits import size_errors, with_data_default
from parsgd.config.rules import cross_field_errors
from parsgd.config.schema import (
    REQUIRED,
    Choice,
    Either,
    Field,
    Float,
    Int,
    Invalid,
    ListOf,
    Literal,
    Mapping,
    Null,
    Records,
    Registered,
    Section,
    Str,
    show,
)
from parsgd.config.spec import Config, RunSpec
from parsgd.config.spec import config_hash as config_hash  # re-exported: the one hash
from parsgd.engine import backends
from parsgd.errors import ConfigError
from parsgd.schedules import StepSize

_POSITIVE_INT = Int(low=1)
_EVERY = Either((Int(low=1), Literal("end")))
_POSITIVE_FLOAT = Float(low=0.0, low_open=True)
# alpha_t for the 0-based step t: inverse eta0/(1+t/t0), inverse_sqrt eta0/sqrt(1+t/t0),
# step eta0*factor^(t//every), cosine min + (eta0-min)(1+cos(pi t/T))/2 over the T steps.
_STEP_SCHEDULE = Mapping(
    (
        ("kind", Choice(("constant", "inverse", "inverse_sqrt", "step", "cosine")), REQUIRED),
        ("eta0", _POSITIVE_FLOAT, REQUIRED),
        ("t0", _POSITIVE_FLOAT, 100.0),
        ("factor", Float(low=0.0, high=1.0, low_open=True), 0.5),
        ("every", Int(low=1), 1000),
        ("min", Float(low=0.0), 0.0),
    )
)

SCHEMA: dict[str, Field | Section] = {
    "name": Field(
        Str(
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}",
            "a name of up to 128 letters, digits, '.', '_', '-'",
        ),
        "run",
        "results go to <out>/<name>/",
    ),
    "seed": Field(Int(low=0, high=2**63 - 1), 0, "master seed; trials and workers derive theirs"),
    "trials": Field(_POSITIVE_INT, 1, "independent repetitions"),
    "workers": Field(Either((Int(low=1, high=4096), Literal("auto"))), "auto"),
    "nodes": Field(
        Either((Int(low=1, high=4096), Literal("auto"))),
        1,
        "nodes (groups of `workers` workers that average among themselves); serial and "
        "processes emulate them on one machine; auto: the MPI world size under backend mpi, "
        "else 1",
    ),
    "backend": Field(Registered(names=backends.names), "processes"),
    "method": Field(
        Choice(("local_sgd", "single", "hogwild")),
        "local_sgd",
        "local_sgd: workers plus averaging; single: one worker; hogwild: one lock-free model",
    ),
    "single_budget": Field(
        Choice(("samples", "steps")),
        "samples",
        "method single: process as many samples as the workers would, or as many steps",
    ),
    "data": DATA_SECTION,
    "objective": OBJECTIVE_SECTION,
    "sgd": Section(
        fields={
            "steps": Field(Int(low=1, high=2**40), 1000, "SGD steps per worker"),
            "step_size": Field(
                Either((_POSITIVE_FLOAT, _STEP_SCHEDULE)),
                0.01,
                "a constant, or {kind: inverse | inverse_sqrt | step | cosine, eta0, ...}",
            ),
            "batch_size": Field(_POSITIVE_INT, 1),
            "init": Field(
                Either((Choice(("zeros", "shared", "independent")), Null())),
                None,
                "null: zeros for convex objectives, shared for pca and mlp",
            ),
            "init_scale": Field(Float(low=0.0), 1.0, "times the problem's own init scale"),
            **SGD_FIELDS,
        }
    ),
    "averaging": Section(
        fields={
            "every": Field(Either((_EVERY, Null())), None, "1 = mini-batch, end = one-shot"),
            "at": Field(Either((ListOf(_POSITIVE_INT), Null())), None),
            "phases": Field(
                Either((Records((("steps", _POSITIVE_INT), ("every", _EVERY))), Null())), None
            ),
            "warmup": Field(Int(low=0), 0, "average every step for this many steps first"),
            "growth": Field(Float(low=0.0, low_open=True), 1.0, "interval multiplier"),
            "global_every": Field(
                Either((_EVERY, Null())),
                None,
                "average across nodes every this many steps (a multiple of every, or end); "
                "null: every round is global",
            ),
            **AVERAGING_FIELDS,
        }
    ),
    "eval": Section(fields={"every": Field(Either((_POSITIVE_INT, Literal("auto"))), "auto")}),
    "checkpoint": Section(fields={"every": Field(Either((_POSITIVE_INT, Null())), None)}),
}


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``dotted.key=value`` overrides (values are YAML-typed) to a raw config."""
    out = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {show(item)} must look like dotted.key=value")
        try:
            value = parse_yaml(text) if text.strip() else None
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {show(text)} as YAML") from None
        set_dotted(out, key, value)
    return out


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``key = "a.b.c"``, creating mappings on the way."""
    *parents, last = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parents[: i + 1])
            raise ConfigError(f"--set {key}: {where} is not a mapping")
        node = child
    node[last] = value


def unknown_key(prefix: str, key: str, valid: list[str], what: str = "key") -> str:
    """``unknown key a.b; did you mean a.c? (valid keys: ...)``: the one such message."""
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {prefix}{close[0]}?" if close else ""
    return f"unknown {what} {prefix}{key}{hint} (valid keys: {', '.join(valid)})"


def _check_fields(
    prefix: str,
    raw: dict[str, Any],
    fields: dict[str, Field],
    out: dict[str, Any],
    errors: list[str],
) -> None:
    for name, spec in fields.items():
        if name not in raw:
            if spec.default is REQUIRED:
                errors.append(f"{prefix}{name} is required ({spec.rule.describe()})")
            else:
                out[name] = copy.deepcopy(spec.default)
            continue
        try:
            out[name] = spec.rule.parse(raw[name])
        except Invalid as exc:
            errors.append(f"{prefix}{name} {exc}")


def _check_section(prefix: str, raw: Any, section: Section, errors: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.append(f"{prefix[:-1]} must be a mapping; got {show(raw)}")
        return out
    fields = dict(section.fields)
    if section.kinds:
        kind = raw.get("kind", section.default_kind)
        if isinstance(kind, str) and kind in section.kinds:
            fields.update(section.kinds[kind])
    for key in raw:
        if key not in fields:
            errors.append(unknown_key(prefix, str(key), list(fields)))
    _check_fields(prefix, raw, fields, out, errors)
    return out


def validate(raw: dict[str, Any]) -> Config:
    """Check a raw config against the schema and fill in defaults; raise one ConfigError."""
    return _validated(raw)[0]


def _validated(raw: dict[str, Any]) -> tuple[Config, StepSize]:
    """``validate``, and the step size parsed from the validated config (once: the L2 rule
    checks it and ``spec_of_raw`` hands it to the spec)."""
    errors: list[str] = []
    config: Config = {}
    raw = with_data_default(raw)
    top_fields = {k: v for k, v in SCHEMA.items() if isinstance(v, Field)}
    for key in raw:
        if key not in SCHEMA:
            errors.append(unknown_key("", str(key), list(SCHEMA)))
    _check_fields("", raw, top_fields, config, errors)
    for key, spec in SCHEMA.items():
        if isinstance(spec, Section):
            config[key] = _check_section(f"{key}.", raw.get(key), spec, errors)
    step_size = None
    if not errors:
        step_size = StepSize.from_config(config)
        errors.extend(cross_field_errors(config, step_size))
    if not errors:
        errors.extend(size_errors(config))
    if errors:
        raise ConfigError("; ".join(errors))
    assert step_size is not None  # parsed whenever the schema checks passed
    return config, step_size


def usable_cpus() -> int:
    """Cores this process may use: CPU affinity, capped by SLURM's allocation if inside one.

    SLURM sets SLURM_CPUS_PER_TASK only with ``--cpus-per-task``; any job has
    SLURM_CPUS_ON_NODE, its CPUs on this node, which matters where SLURM does not bind
    tasks to their CPUs (``TaskPlugin=task/none``) and affinity shows the whole node.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        slurm = os.environ.get(key, "")
        if slurm.isdigit() and int(slurm) > 0:
            count = min(count, int(slurm))
            break
    return max(1, count)


def resolve(config: Config, auto_workers: int | None = None) -> Config:
    """Fill in what depends on the machine or on other keys ("auto" values).

    ``auto_workers``: what ``workers: auto`` means where the run will run (a sweep submitted
    to SLURM: the CPUs each task gets); None: the cores of this machine.
    """
    out = copy.deepcopy(config)
    if out["workers"] == "auto":
        out["workers"] = usable_cpus() if auto_workers is None else auto_workers
    if out["nodes"] == "auto":
        out["nodes"] = backends.auto_nodes(out["backend"])
    if out["method"] == "single":
        # One worker; with the samples budget it runs workers x steps steps, so curves
        # compare at equal samples. The saved config shows what actually ran.
        if out["single_budget"] == "samples":
            out["sgd"]["steps"] *= out["workers"]
            if out["eval"]["every"] != "auto":
                out["eval"]["every"] *= out["workers"]
        out["workers"] = 1
        out["nodes"] = 1
    if out["eval"]["every"] == "auto":
        out["eval"]["every"] = max(1, out["sgd"]["steps"] // 50)
    if "seed" in out["data"] and out["data"]["seed"] is None:
        out["data"]["seed"] = out["seed"]
    if out["sgd"]["init"] is None:
        random_start = out["objective"]["kind"] in RANDOM_START_OBJECTIVES
        out["sgd"]["init"] = "shared" if random_start else "zeros"
    if "path" in out["data"]:
        # Paths from the config file were made absolute in load_config; what is still
        # relative came from --set and is taken from the working directory.
        out["data"]["path"] = str(absolute_path(Path(out["data"]["path"])))
    return out


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunSpec:
    """Load, override, validate and resolve a config file (``None``: defaults only) into
    the run's spec.

    A relative ``data.path`` in the file is resolved against the file's directory (one given
    with ``--set`` against the working directory); the saved config holds the absolute path.
    """
    raw = load_yaml(path) if path is not None else {}
    if path is not None:
        anchor_data_path(raw, Path(path).resolve().parent)
    return spec_of_raw(apply_overrides(raw, overrides or []))


def spec_of_raw(raw: dict[str, Any], auto_workers: int | None = None) -> RunSpec:
    """Validate and resolve a raw config mapping into its spec (``auto_workers``: as for
    ``resolve``); the step size the validator parsed is the spec's."""
    config, step_size = _validated(raw)
    return RunSpec.from_resolved(resolve(config, auto_workers), step_size=step_size)


def spec_of_saved(config: Config) -> RunSpec:
    """The spec of a run from the resolved config it saved (``config.yaml``, a sweep plan).

    Validated and resolved again (both leave a resolved config as it is), so the sections
    give keys added to the schema since the run was made their defaults, while the hash and
    ``to_dict()`` stay those of the saved mapping (what its run.json recorded). Where it no
    longer validates (``method: single`` rescales sgd.steps, so its phases no longer add up)
    it is taken as written; ConfigError if it cannot be.
    """
    try:
        checked, step_size = _validated(copy.deepcopy(config))
    except ConfigError as exc:
        try:
            return RunSpec.from_resolved(config)
        except (KeyError, TypeError, ValueError):
            raise exc from None
    return RunSpec.from_resolved(resolve(checked), saved=config, step_size=step_size)
