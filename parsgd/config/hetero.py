"""Config keys for workers that differ: data partitions, sampling, momentum (issue 17).

One self-contained block: the declared keys (``DATA_FIELDS`` go into the ``data`` section,
``SGD_FIELDS`` into ``sgd``, ``AVERAGING_FIELDS`` into ``averaging``), the rules that tie
them to the rest of the config (``hetero_errors``), and which of their values are the
defaults that leave the config hash as it was before these keys existed.

    data.partition      {kind: shared}            every worker samples the whole pool
                        {kind: shards}            disjoint equal shards, a seeded permutation
                        {kind: dirichlet, alpha}  label skew: each class split over the
                                                  workers in Dirichlet(alpha) proportions
    sgd.sampling        with_replacement | shuffle (a fresh permutation of the worker's
                        rows every epoch)
    sgd.momentum        beta in [0, 1): heavy ball; sgd.nesterov: Nesterov's form
    averaging.momentum  what an averaging round does to the buffers: average | reset | keep
"""

from __future__ import annotations

from typing import Any

from parsgd.config.schema import Bool, Choice, Either, Field, Float, Mapping, Null

PARTITION_KINDS = ("shared", "shards", "dirichlet")
SAMPLING = ("with_replacement", "shuffle")
MOMENTUM_AT_AVERAGING = ("average", "reset", "keep")
DEFAULT_PARTITION = {"kind": "shared", "alpha": None}

# Objectives whose rows carry class labels (dirichlet needs them); least_squares fits a
# real target and pca ignores labels.
LABELLED_OBJECTIVES = ("logistic", "hinge", "softmax", "mlp")

_PARTITION = Mapping(
    (
        ("kind", Choice(PARTITION_KINDS), "shared"),
        ("alpha", Either((Float(low=0.0, low_open=True), Null())), None),
    )
)

DATA_FIELDS = {
    "partition": Field(
        _PARTITION,
        dict(DEFAULT_PARTITION),
        "which rows each worker samples: {kind: shared | shards | dirichlet, alpha}",
    ),
}
SGD_FIELDS = {
    "sampling": Field(
        Choice(SAMPLING), "with_replacement", "shuffle: each epoch a fresh permutation"
    ),
    "momentum": Field(Float(low=0.0, high=0.999), 0.0, "heavy-ball momentum beta; 0: plain"),
    "nesterov": Field(Bool(), False, "Nesterov's momentum (needs sgd.momentum > 0)"),
}
AVERAGING_FIELDS = {
    "momentum": Field(
        Choice(MOMENTUM_AT_AVERAGING),
        "keep",
        "at an averaging round: average the momentum buffers, reset them, or keep them",
    ),
}


def has_pool(config: dict[str, Any]) -> bool:
    """True if the workers sample rows of a pool (not a stream, not the quadratic)."""
    return config["objective"]["kind"] != "quadratic" and not config["data"].get("stream", False)


def hetero_errors(config: dict[str, Any]) -> list[str]:
    """The cross-field rules of the keys above, each a one-line message naming the key."""
    errors = []
    partition = config["data"].get("partition", DEFAULT_PARTITION)  # none has no rows
    kind, alpha = partition["kind"], partition["alpha"]
    objective = config["objective"]["kind"]
    if kind == "dirichlet" and alpha is None:
        errors.append("data.partition.alpha is required for kind dirichlet (a number > 0)")
    if kind != "dirichlet" and alpha is not None:
        errors.append(f"data.partition.alpha applies only to kind dirichlet; got kind {kind}")
    if not has_pool(config):
        where = (
            "objective.kind quadratic has no rows"
            if objective == "quadratic"
            else "data.stream is true"
        )
        if kind != "shared":
            errors.append(f"data.partition {kind} needs a pool of rows to split; {where}")
        if config["sgd"]["sampling"] == "shuffle":
            errors.append(f"sgd.sampling shuffle needs a pool of rows to permute; {where}")
    elif kind == "dirichlet" and objective not in LABELLED_OBJECTIVES:
        errors.append(
            f"data.partition dirichlet needs class labels; objective.kind {objective} has "
            f"none (use one of {', '.join(LABELLED_OBJECTIVES)}, or partition shards)"
        )
    n, workers = config["data"].get("n"), config["workers"]
    if kind != "shared" and isinstance(n, int) and isinstance(workers, int):
        total = workers * config["nodes"] if config["method"] != "single" else 1
        if total > n:
            errors.append(
                f"data.partition {kind} needs data.n >= workers x nodes ({total}) so that "
                f"every worker gets a row; got data.n {n}"
            )
    sgd = config["sgd"]
    if sgd["nesterov"] and sgd["momentum"] == 0.0:
        errors.append("sgd.nesterov needs sgd.momentum > 0; got sgd.momentum 0")
    if sgd["momentum"] > 0.0 and config["method"] == "hogwild":
        errors.append(
            f"sgd.momentum is not supported with method hogwild (one shared model, no "
            f"per-worker buffer); got {sgd['momentum']:g}"
        )
    l2 = config["objective"].get("l2", 0.0)
    if sgd["momentum"] > 0.0 and l2 >= 1.0:
        # The momentum step takes g from a unit step of the objective's loop, whose L2
        # shrink factor 1 - l2 must stay positive (the sparse loops divide by it).
        errors.append(f"sgd.momentum > 0 needs objective.l2 < 1; got objective.l2 {l2:g}")
    return errors


def hash_defaults_dropped(relevant: dict[str, Any]) -> dict[str, Any]:
    """The hashed config without these keys where they hold their defaults, so that runs
    from before the keys existed keep their hash (and their checkpoints stay resumable)."""
    out = dict(relevant)
    data = out.get("data")
    if isinstance(data, dict) and data.get("partition") == DEFAULT_PARTITION:
        out["data"] = {k: v for k, v in data.items() if k != "partition"}
    sgd = out.get("sgd")
    if isinstance(sgd, dict):
        defaults = {"sampling": "with_replacement", "momentum": 0.0, "nesterov": False}
        out["sgd"] = {k: v for k, v in sgd.items() if k not in defaults or v != defaults[k]}
    averaging = out.get("averaging")
    if isinstance(averaging, dict) and averaging.get("momentum") == "keep":
        out["averaging"] = {k: v for k, v in averaging.items() if k != "momentum"}
    return out
