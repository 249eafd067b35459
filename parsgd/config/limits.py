"""Bounds on what a config may ask for, checked before anything is built or run.

Every value is checked at load; these rules catch what is valid key by key but would be
materialised whole later: YAML that expands (aliases) or nests without end, a meeting plan
of 2^40 steps, a streamed batch of terabytes, a sweep grid of millions of points. Each
refusal is one line giving the limit.
"""

from __future__ import annotations

import math
from typing import Any

from parsgd.config.kinds import DATA_FOR_OBJECTIVE, DATA_SECTION, OBJECTIVE_SECTION

MAX_CONFIG_BYTES = 1 << 20  # a config or sweep file; real ones are a few hundred bytes
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 200_000  # values after expanding aliases
# Meetings per trial held one by one (trace rows, listed averaging rounds); a periodic
# schedule's rounds are held as progressions, whatever their number.
MAX_MEETINGS = 1 << 24
MAX_STREAM_BATCH_VALUES = 1 << 27  # sgd.batch_size x data.d on a stream: 1 GiB of float64
MAX_SWEEP_POINTS = 100_000


def count_values(value: Any, budget: int = MAX_YAML_VALUES) -> int:
    """The number of values in ``value`` with aliases expanded, stopping past ``budget``.

    A YAML alias is the same Python object reused, so ``a: &x [*y, *y, ...]`` is a small
    graph that reads (and prints, and validates) as a tree of billions of values.
    """
    count, stack = 0, [value]
    while stack and count <= budget:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def with_data_default(raw: dict[str, Any]) -> dict[str, Any]:
    """Let the data kind default follow the objective (quadratic: none; pca: pca_spectrum).

    Only where the user named no data kind; an explicit kind is checked as written.
    """
    objective = raw.get("objective")
    kind = objective.get("kind") if isinstance(objective, dict) else None
    kind = kind if kind is not None else OBJECTIVE_SECTION.default_kind
    data = raw.get("data")
    allowed = DATA_FOR_OBJECTIVE.get(kind) if isinstance(kind, str) else None
    if (
        allowed
        and DATA_SECTION.default_kind not in allowed
        and (data is None or (isinstance(data, dict) and "kind" not in data))
    ):
        return {**raw, "data": {**(data or {}), "kind": allowed[0]}}
    return raw


def meeting_count_bound(config: dict[str, Any]) -> int:
    """An upper bound on the meetings of one trial that are held one by one: trace rows
    (each a Python meeting and a line of trace.csv) and averaging rounds that no progression
    holds (``at`` lists, and ``growth``, whose rounds are listed as they are computed).
    Periodic rounds and phases cost nothing to hold (``stepsets.StepSet``)."""
    steps = config["sgd"]["steps"]
    averaging = config["averaging"]
    every = averaging["every"]
    if config["method"] in ("hogwild", "single"):  # one model: no rounds at all
        listed = 0
    elif averaging["at"] is not None:
        listed = len(averaging["at"])
    elif averaging["phases"] is None and averaging["growth"] != 1.0 and isinstance(every, int):
        listed = steps // every
    else:
        listed = 0
    every_eval = config["eval"]["every"]
    records = 50 if every_eval == "auto" else steps // every_eval
    return listed + records + 2


def size_errors(config: dict[str, Any]) -> list[str]:
    """The bounds a validated config breaks, one message each."""
    errors = []
    meetings = meeting_count_bound(config)
    if meetings > MAX_MEETINGS:
        averaging = config["averaging"]
        how = ""
        if averaging["at"] is not None:
            how = f" and averaging.at ({len(averaging['at'])} steps)"
        elif averaging["growth"] != 1.0:
            how = f" and averaging.growth {averaging['growth']!r}"
        errors.append(
            f"sgd.steps {config['sgd']['steps']} with eval.every {config['eval']['every']}"
            f"{how} makes up to {meetings} trace rows and listed "
            f"averaging rounds per trial; the limit is {MAX_MEETINGS}: evaluate "
            f"{'or average ' if how else ''}less often, or run fewer steps"
        )
    data, batch = config["data"], config["sgd"]["batch_size"]
    if data.get("stream") and "d" in data and batch * data["d"] > MAX_STREAM_BATCH_VALUES:
        errors.append(
            f"sgd.batch_size {batch} x data.d {data['d']} values per streamed batch is more "
            f"than the limit of {MAX_STREAM_BATCH_VALUES} (1 GiB); use a smaller batch"
        )
    return errors


def sweep_size_error(lengths: list[int]) -> str | None:
    """The message if a sweep's axes (their lengths) make more points than allowed."""
    total = math.prod(lengths)
    if total > MAX_SWEEP_POINTS:
        shown = " x ".join(map(str, lengths))
        return f"the sweep has {shown} = {total} points; the limit is {MAX_SWEEP_POINTS}"
    return None
