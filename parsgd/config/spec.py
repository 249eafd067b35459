"""The run spec: a resolved config as frozen, typed sections, built once at the boundary.

``parsgd.config.load`` validates and resolves a YAML config into a plain mapping and hands it
to ``RunSpec.from_resolved``, the one place a mapping becomes a spec: the step size and the
averaging schedule are parsed there, and the config hash is computed there. Everything
downstream (engine, sweeps, analysis, bench, cli) reads attributes of the spec, never keys
of the mapping. The spec keeps the resolved mapping it came from, unchanged, so the files a
run writes (``config.yaml``, the sweep plan) hold exactly what they held before the spec.

Top-level fields mirror the YAML's top-level keys, and each section its YAML section, so
``spec.sgd.batch_size`` is the ``sgd.batch_size`` of the file. ``data`` and ``objective``
hold keys that depend on their ``kind``: each is the dataclass of its kind
(``parsgd.config.kind_specs``), so ``spec.objective.hidden`` is the ``objective.hidden`` of an
mlp run and ``isinstance(spec.data, FileData)`` says the data come from a file.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from parsgd.config.hetero import hash_defaults_dropped
from parsgd.config.kind_specs import (
    DataSpec,
    ObjectiveSpec,
    SyntheticData,
    data_spec,
    objective_spec,
)
from parsgd.schedules import AveragingSchedule, StepSize

Config = dict[str, Any]

# Keys that do not change the numbers a run produces; left out of the config hash.
_HASH_EXCLUDED = ("name", "backend")


def config_hash(config: Config) -> str:
    """A stable hash of everything in a resolved config that changes the numbers a run
    produces: what ``run.json``, checkpoints and sweep run ids record (``RunSpec.config_hash``
    is this of the spec's resolved mapping)."""
    relevant = {k: v for k, v in config.items() if k not in _HASH_EXCLUDED}
    # Keys added later hash only when set, so earlier runs' checkpoints stay resumable.
    if relevant.get("nodes") == 1:
        del relevant["nodes"]
    averaging = relevant.get("averaging")
    if isinstance(averaging, dict) and averaging.get("global_every") is None:
        relevant["averaging"] = {k: v for k, v in averaging.items() if k != "global_every"}
    objective = relevant.get("objective")
    if isinstance(objective, dict) and objective.get("kind") == "quadratic":
        later = ("zeta", "curvature_spread")  # the heterogeneous quadratic's keys
        relevant["objective"] = {k: v for k, v in objective.items() if k not in later or v != 0.0}
    relevant = hash_defaults_dropped(relevant)  # data.partition, sampling, momentum
    text = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SgdSpec:
    """``sgd``: the local steps of every worker."""

    steps: int
    step_size: StepSize
    batch_size: int
    init: str  # zeros | shared | independent (resolved: never null)
    init_scale: float
    # Issue 17 (parsgd.config.hetero): the order of a worker's samples and momentum.
    sampling: str = "with_replacement"  # or shuffle
    momentum: float = 0.0  # heavy-ball beta; 0: plain SGD
    nesterov: bool = False


@dataclass(frozen=True, slots=True)
class AveragingSpec:
    """``averaging``: when workers average (the schedule) and when across nodes."""

    schedule: AveragingSchedule
    global_every: int | str | None
    momentum: str = "keep"  # what a round does to the momentum buffers: average | reset | keep


@dataclass(frozen=True, slots=True)
class EvalSpec:
    """``eval``: a trace row every ``every`` steps (resolved: never auto)."""

    every: int


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """``checkpoint``: a checkpoint every ``every`` averaging rounds; None: only on a stop."""

    every: int | None


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One run, validated and resolved: what the engine, sweeps and reports read."""

    name: str
    seed: int
    trials: int
    workers: int  # per node (resolved: never auto)
    nodes: int
    backend: str
    method: str  # local_sgd | single | hogwild
    single_budget: str
    data: DataSpec
    objective: ObjectiveSpec
    sgd: SgdSpec
    averaging: AveragingSpec
    eval: EvalSpec
    checkpoint: CheckpointSpec
    config_hash: str  # ``config_hash`` of the resolved mapping
    _resolved: Config = field(repr=False, compare=False)

    @classmethod
    def from_resolved(
        cls,
        config: Mapping[str, Any],
        saved: Mapping[str, Any] | None = None,
        step_size: StepSize | None = None,
    ) -> RunSpec:
        """The spec of a validated, resolved config (``load.resolve(load.validate(raw))``).

        Trusts its input: validation happened before, with its messages. ``saved``: the
        mapping a run wrote, if ``config`` is it with defaults filled in (``spec_of_saved``);
        the hash and ``to_dict()`` are then the saved mapping's. ``step_size``: the one the
        validator parsed (``load.spec_of_raw``), over the resolved ``sgd.steps``; parsed
        here if not given.
        """
        resolved: Config = copy.deepcopy(dict(config))
        kept: Config = resolved if saved is None else copy.deepcopy(dict(saved))
        sgd, averaging = resolved["sgd"], resolved["averaging"]
        if step_size is None:
            step_size = StepSize.from_config(resolved)
        else:  # resolving may change the steps (method single), never the step size's keys
            step_size = replace(step_size, total_steps=sgd["steps"])
        return cls(
            name=resolved["name"],
            seed=resolved["seed"],
            trials=resolved["trials"],
            workers=resolved["workers"],
            nodes=resolved["nodes"],
            backend=resolved["backend"],
            method=resolved["method"],
            single_budget=resolved["single_budget"],
            data=data_spec(resolved["data"]),
            objective=objective_spec(resolved["objective"]),
            sgd=SgdSpec(
                steps=sgd["steps"],
                step_size=step_size,
                batch_size=sgd["batch_size"],
                init=sgd["init"],
                init_scale=sgd["init_scale"],
                sampling=sgd.get("sampling", "with_replacement"),
                momentum=float(sgd.get("momentum", 0.0)),
                nesterov=bool(sgd.get("nesterov", False)),
            ),
            averaging=AveragingSpec(
                schedule=AveragingSchedule.from_config(averaging),
                global_every=averaging["global_every"],
                momentum=averaging.get("momentum", "keep"),
            ),
            eval=EvalSpec(every=resolved["eval"]["every"]),
            checkpoint=CheckpointSpec(every=resolved["checkpoint"]["every"]),
            config_hash=config_hash(kept),
            _resolved=kept,
        )

    def to_dict(self) -> Config:
        """The resolved config as written to ``config.yaml`` and sweep plans (a copy)."""
        return copy.deepcopy(self._resolved)

    def renamed(self, name: str) -> RunSpec:
        """The same run under another name (the name is not in the hash)."""
        return replace(self, name=name, _resolved={**self._resolved, "name": name})

    def with_samples_at_most(self, n: int) -> RunSpec:
        """The same run on a synthetic pool of at most ``n`` samples (to compile kernels on)."""
        if not isinstance(self.data, SyntheticData) or self.data.n <= n:
            return self
        data = {**self._resolved["data"], "n": n}
        return RunSpec.from_resolved({**self._resolved, "data": data})

    @property
    def ranks(self) -> int:
        """Every worker of the run, over all nodes (M)."""
        return self.workers * self.nodes
