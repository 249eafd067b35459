"""The config's cross-field rules: what ties several keys together, each broken rule a
one-line message naming the keys. ``parsgd.config.load.validate`` runs them once every key
has passed its own rule (``parsgd.config.hetero`` has the rules of the issue-17 keys).
"""

from __future__ import annotations

from typing import Any

from parsgd.config.hetero import hetero_errors
from parsgd.config.kinds import DATA_FOR_OBJECTIVE, POOL_ONLY_OBJECTIVES
from parsgd.config.spec import Config
from parsgd.engine import backends
from parsgd.schedules import StepSize


def _global_every_errors(averaging: dict[str, Any]) -> list[str]:
    """``global_every`` must land on averaging rounds: a multiple of every interval, or end."""
    global_every = averaging["global_every"]
    if global_every is None or global_every == "end":
        return []
    intervals = [averaging["every"]] if averaging["phases"] is None else []
    intervals += [p["every"] for p in averaging["phases"] or []]
    for every in intervals:
        if every == "end" or (isinstance(every, int) and global_every % every != 0):
            return [
                f"averaging.global_every must be a multiple of averaging.every ({every}) "
                f"or end; got {global_every}"
            ]
    return []


def _hogwild_errors(config: Config) -> list[str]:
    """Hogwild! is one model in one machine's memory, updated in place by every worker: it
    has no nodes to average across (``nodes: auto`` is the MPI world under backend mpi)."""
    nodes = config["nodes"]
    if config["method"] != "hogwild" or nodes == 1:
        return []
    if nodes == "auto" and not backends.info(config["backend"]).across_nodes:
        return []
    meaning = " (the MPI world size under backend mpi)" if nodes == "auto" else ""
    return [f"method hogwild needs nodes 1 (one shared model in one machine's memory); "
            f"got nodes {nodes}{meaning}"]  # fmt: skip


def cross_field_errors(config: Config, step_size: StepSize) -> list[str]:
    """Rules that tie several keys together, all in one place (``step_size``: the parsed
    ``sgd.step_size``). Fills in ``averaging.every`` where none of every, at, phases is given
    (its default depends on ``averaging.warmup``)."""
    errors = []
    averaging = config["averaging"]
    given = [k for k in ("every", "at", "phases") if averaging[k] is not None]
    if len(given) > 1:
        errors.append(f"averaging takes one of every, at, phases; got {', '.join(given)}")
    if not given:
        averaging["every"] = 10 if averaging["warmup"] == 0 else None
        if averaging["every"] is None:
            errors.append("averaging.warmup needs averaging.every (the interval after warm-up)")
    if (averaging["growth"] != 1.0 or averaging["warmup"]) and not isinstance(
        averaging["every"], int
    ):
        errors.append(
            f"averaging.growth and averaging.warmup need an integer averaging.every; "
            f"got {averaging['every']!r}"
        )
    errors.extend(_global_every_errors(averaging))
    steps = config["sgd"]["steps"]
    if averaging["at"] is not None and max(averaging["at"]) > steps:
        errors.append(
            f"averaging.at must list steps <= sgd.steps ({steps}); got {max(averaging['at'])}"
        )
    if averaging["phases"] is not None:
        total = sum(phase["steps"] for phase in averaging["phases"])
        if total != steps:
            errors.append(f"averaging.phases steps must add up to sgd.steps ({steps}); got {total}")
    data, objective = config["data"], config["objective"]
    if "n" in data and not data.get("stream", False) and config["sgd"]["batch_size"] > data["n"]:
        errors.append(
            f"sgd.batch_size must be <= data.n ({data['n']}); got {config['sgd']['batch_size']}"
        )
    l2 = objective.get("l2", 0.0)
    largest_step = step_size.largest
    if l2 * largest_step >= 1.0:
        errors.append(
            f"sgd.step_size * objective.l2 must be < 1 (the L2 shrink factor 1 - step_size * l2 "
            f"must stay positive); got {largest_step * l2:g}"
        )
    if data.get("stream") and objective["kind"] in POOL_ONLY_OBJECTIVES:
        errors.append(
            f"data.stream must be false for objective.kind {objective['kind']} (it needs a pool)"
        )
    allowed = DATA_FOR_OBJECTIVE[objective["kind"]]
    if data["kind"] not in allowed:
        errors.append(
            f"data.kind must be one of {', '.join(allowed)} for objective.kind "
            f"{objective['kind']}; got {data['kind']}"
            + (
                " (quadratic makes its own noise: use data: {kind: none})"
                if allowed == ("none",)
                else ""
            )
        )
    errors.extend(hetero_errors(config))
    errors.extend(_hogwild_errors(config))
    for prefix, section in (("data", data), ("objective", objective)):
        eigenvalues = section.get("eigenvalues")
        if eigenvalues is not None and len(eigenvalues) != section["d"]:
            errors.append(
                f"{prefix}.eigenvalues must list {prefix}.d ({section['d']}) values; "
                f"got {len(eigenvalues)}"
            )
        if "eig_min" in section and section["eig_min"] > section["eig_max"]:
            errors.append(
                f"{prefix}.eig_min must be <= {prefix}.eig_max ({section['eig_max']:g}); "
                f"got {section['eig_min']:g}"
            )
    return errors
