"""The keys of issue 17 (partitions, sampling, momentum): values and combinations refused
with one line naming the key, exit 2 and nothing written; defaults keep the old hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import cli_in_process, run_cli, write_config

from parsgd.config.load import config_hash, resolve, validate
from parsgd.errors import ConfigError

_DIGITS = {"kind": "bundled", "name": "digits"}


def _write(path: Path, **sections: object) -> Path:
    """``write_config``, except that a ``data`` naming its kind replaces the data section."""
    data = sections.pop("data", None)
    write_config(path, **sections)
    if isinstance(data, dict) and "kind" in data:
        config = yaml.safe_load(path.read_text())
        config["data"] = data
        path.write_text(yaml.safe_dump(config))
    elif data is not None:
        write_config(path, data=data, **sections)
    return path


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"data": {"partition": {"kind": "dirichlet", "alpha": 0.5}}},
            "data.partition dirichlet needs class labels; objective.kind least_squares has none",
        ),
        (
            {"objective": {"kind": "pca"}, "data": {"kind": "pca_spectrum", "n": 100, "d": 4,
             "partition": {"kind": "dirichlet", "alpha": 1.0}}},
            "data.partition dirichlet needs class labels; objective.kind pca has none",
        ),
        (
            {"data": {**_DIGITS, "partition": {"kind": "dirichlet"}},
             "objective": {"kind": "softmax"}},
            "data.partition.alpha is required for kind dirichlet",
        ),
        (
            {"data": {"partition": {"kind": "shards", "alpha": 1.0}}},
            "data.partition.alpha applies only to kind dirichlet; got kind shards",
        ),
        (
            {"data": {"partition": {"kind": "dirichlet", "alpha": 0}}},
            "data.partition key alpha must be a finite number > 0 or null; got 0",
        ),
        (
            {"data": {"partition": {"kind": "stripes"}}},
            'data.partition key kind must be one of shared, shards, dirichlet; got "stripes"',
        ),
        (
            {"data": {"partition": {"knd": "shards"}}},
            "data.partition has unknown key knd (valid keys: kind, alpha)",
        ),
        (
            {"workers": 5, "data": {"n": 4, "partition": {"kind": "shards"}}},
            "data.partition shards needs data.n >= workers x nodes (5)",
        ),
        (
            {"data": {"stream": True, "partition": {"kind": "shards"}}},
            "data.partition shards needs a pool of rows to split; data.stream is true",
        ),
        (
            {"objective": {"kind": "quadratic"}, "data": {"kind": "none"},
             "sgd": {"sampling": "shuffle"}},
            "sgd.sampling shuffle needs a pool of rows to permute; objective.kind quadratic",
        ),
        (
            {"sgd": {"sampling": "without"}},
            'sgd.sampling must be one of with_replacement, shuffle; got "without"',
        ),
        (
            {"method": "hogwild", "sgd": {"momentum": 0.9}},
            "sgd.momentum is not supported with method hogwild",
        ),
        (
            {"method": "hogwild", "nodes": 2},
            "method hogwild needs nodes 1 (one shared model in one machine's memory); got nodes 2",
        ),
        (
            {"method": "hogwild", "backend": "mpi", "nodes": "auto"},
            "method hogwild needs nodes 1 (one shared model in one machine's memory); got nodes "
            "auto (the MPI world size under backend mpi)",
        ),
        ({"sgd": {"momentum": 1.0}}, "sgd.momentum must be a finite number >= 0 and <= 0.999"),
        ({"sgd": {"nesterov": True}}, "sgd.nesterov needs sgd.momentum > 0"),
        (
            {"objective": {"l2": 1.5}, "sgd": {"momentum": 0.5, "step_size": 0.1}},
            "sgd.momentum > 0 needs objective.l2 < 1; got objective.l2 1.5",
        ),
        (
            {"averaging": {"every": 10, "momentum": "mean"}},
            'averaging.momentum must be one of average, reset, keep; got "mean"',
        ),
    ],
)  # fmt: skip
def test_bad_keys_and_combinations_exit_2_naming_the_key(
    tmp_path: Path, sections: dict, message: str
) -> None:
    config = _write(tmp_path / "c.yaml", **sections)
    out = tmp_path / "out"
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    cli = (
        run_cli
        if message.startswith("data.partition dirichlet needs class labels; objective.kind least")
        else cli_in_process
    )
    result = cli("run", str(config), "--out", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_more_workers_than_loaded_rows_is_a_data_error_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """The rows of a file are known only once it is loaded: still exit 2, nothing written."""
    import numpy as np

    path = tmp_path / "tiny.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.array([0, 1, 0]))
    config = _write(
        tmp_path / "c.yaml",
        workers=4,
        backend="serial",
        data={"kind": "file", "path": str(path), "partition": {"kind": "shards"}},
        objective={"kind": "logistic"},
    )
    result = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "data.partition shards needs at least one row per worker: 4 workers" in result.stderr
    assert not (tmp_path / "out" / "t").exists()


def test_the_defaults_leave_the_config_hash_as_before() -> None:
    """Runs from before these keys existed keep their hash (and stay resumable); the hash
    was taken from the tree before this change."""
    raw = {"workers": 2, "seed": 5, "data": _DIGITS, "objective": {"kind": "softmax"}}
    config = resolve(validate(raw))
    assert config["data"]["partition"] == {"kind": "shared", "alpha": None}
    assert config["sgd"]["sampling"] == "with_replacement" and config["sgd"]["momentum"] == 0.0
    assert config["averaging"]["momentum"] == "keep"
    assert config_hash(config) == "ffafe88e851c2d01"
    for key, value in [
        ("data", {**_DIGITS, "partition": {"kind": "shards"}}),
        ("sgd", {"sampling": "shuffle"}),
        ("sgd", {"momentum": 0.5}),
        ("averaging", {"every": 10, "momentum": "average"}),
    ]:
        changed = resolve(validate({**raw, key: value}))
        assert config_hash(changed) != config_hash(config), (key, value)


def test_dirichlet_is_accepted_for_every_labelled_objective() -> None:
    for objective in ("logistic", "hinge", "softmax", "mlp"):
        data = {**_DIGITS, "partition": {"kind": "dirichlet", "alpha": 0.3}}
        if objective in ("logistic", "hinge"):
            data = {"kind": "logistic_planted", "partition": data["partition"]}
        validate({"data": data, "objective": {"kind": objective}})
    with pytest.raises(ConfigError, match="least_squares has none"):
        validate({"data": {**_DIGITS, "partition": {"kind": "dirichlet", "alpha": 1}}})
