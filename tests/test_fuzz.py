"""Random and mutated configs: the only outcomes are a valid run or a clean ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from conftest import cli_in_process
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from parsgd.config.load import SCHEMA, apply_overrides, resolve, validate
from parsgd.config.schema import Section
from parsgd.engine.runner import run_experiment
from parsgd.errors import ConfigError, DataError

KEYS = (
    [name for name, spec in SCHEMA.items() if not isinstance(spec, Section)]
    + [
        f"{section}.{key}"
        for section, spec in SCHEMA.items()
        if isinstance(spec, Section)
        for key in [*spec.fields, *(k for kind in spec.kinds.values() for k in kind)]
    ]
    + ["bogus", "sgd.bogus", "data.kind.deeper"]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=3000),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["end", "auto", "zeros", "inverse", "", "processes", "serial", "x"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.sampled_from(["kind", "eta0", "steps", "every", "n"]), scalars, max_size=3),
)
mutations = st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=4)

SMALL = [
    "trials=1",
    "workers=2",
    "data.n=300",
    "data.d=4",
    "sgd.steps=50",
    "eval.every=25",
    "backend=serial",
]


def _outcome(items: list[tuple[str, Any]]) -> str:
    raw = apply_overrides({}, SMALL)
    try:
        for key, value in items:
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...")
            raw = apply_overrides(raw, [f"{key}={text.strip()}"])
        config = resolve(validate(raw))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
        return "config-error"
    small = (
        config["sgd"]["steps"] * config["trials"] * config["workers"] <= 50_000
        and config["data"]["n"] * config["data"]["d"] <= 100_000
    )
    if not small:
        return "valid"
    with tempfile.TemporaryDirectory() as out:
        try:
            result = run_experiment(config, Path(out) / "runs")
        except (ConfigError, DataError) as exc:  # found only at run time: as clean
            assert str(exc) and "\n" not in str(exc)
            assert not (Path(out) / "runs").exists()  # nothing started or written
            return "data-error"
        assert result.status in ("completed", "diverged"), result
        record = (result.directory / "run.json").read_text()
        assert '"status": "running"' not in record
    return "ran"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations)
def test_mutated_configs_give_a_run_or_a_clean_error(items: list[tuple[str, Any]]) -> None:
    # _outcome's own assertions are the test (--hypothesis-show-statistics shows the mix).
    event(_outcome(items))


def test_each_outcome_is_reached_and_checked() -> None:
    """The fuzz's branches are not dead: each is taken by a config made to take it."""
    assert _outcome([]) == "ran"
    assert _outcome([("sgd.steps", -1)]) == "config-error"
    assert _outcome([("sgd.steps", 10**6)]) == "valid"
    assert _outcome([("data.kind", "file"), ("data.path", "no-such-file.csv")]) in (
        "config-error",
        "data-error",
    )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="abc:{}[]-, \n0123456789.\"'#&*!|>", max_size=60))
def test_arbitrary_yaml_text_through_the_cli(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text)
        # The CLI's main in this process: the same parse, load and messages, without a
        # subprocess's start-up per example (test_reliability_input runs bad YAML through
        # a real parsgd process).
        done = cli_in_process("run", str(path), "--dry-run", "--out", str(Path(tmp) / "out"))
        assert done.returncode in (0, 2), done.stderr
        assert "Traceback" not in done.stderr
        if done.returncode == 2:
            assert len(done.stderr.strip().splitlines()) == 1
        assert not (Path(tmp) / "out").exists()


cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-3, 3).map(str),
    st.sampled_from(["", "x", "1e999", "-", " ", '"1"']),
)
csv_rows = st.lists(st.lists(cells, min_size=0, max_size=4), min_size=0, max_size=6)
svmlight_lines = st.lists(
    st.sampled_from(["1 1:0.5 2:1.0", "-1 2:3", "0 1:x", "1 0:1", "+1 3:1e999", "1", "", "#c"]),
    max_size=6,
)


def _data_outcome(text: str, fmt: str, objective: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d.{fmt}"
        path.write_text(text)
        pool = [o for o in SMALL if not o.startswith(("data.n=", "data.d="))]
        overrides = [
            *pool,
            "data.kind=file",
            f"data.path={path}",
            f"data.format={fmt}",
            f"objective.kind={objective}",
        ]
        try:
            config = resolve(validate(apply_overrides({}, overrides)))
            result = run_experiment(config, Path(tmp) / "out")
        except (ConfigError, DataError) as exc:
            assert str(exc) and "\n" not in str(exc)
            assert not (Path(tmp) / "out").exists()
            return "clean-error"
        assert result.status in ("completed", "diverged")
        return "ran"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_rows, st.sampled_from(["least_squares", "logistic"]))
def test_mutated_csv_files_give_a_run_or_a_clean_error(
    rows: list[list[str]], objective: str
) -> None:
    text = "a,b,c,y\n" + "\n".join(",".join(row) for row in rows)
    assert _data_outcome(text, "csv", objective) in ("clean-error", "ran")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(svmlight_lines, st.sampled_from(["least_squares", "hinge"]))
def test_mutated_svmlight_files_give_a_run_or_a_clean_error(
    lines: list[str], objective: str
) -> None:
    assert _data_outcome("\n".join(lines), "svmlight", objective) in ("clean-error", "ran")
