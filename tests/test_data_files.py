"""Data files and bundled data: formats agree, bad data is one clear line (exit 2, nothing
written), an svmlight copy of a bundled set gives the bundled set's trace, optima are cached."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli_in_process, run_cli
from sklearn.datasets import dump_svmlight_file, load_breast_cancer

from parsgd.engine.rundir import read_trace

TIMING_COLUMNS = ("wall_s", "compute_s", "sync_wait_s")


def _config(path: Path, data: dict, objective: dict | None = None, **top: object) -> Path:
    config = {
        "name": "f",
        "seed": 1,
        "trials": 1,
        "workers": 2,
        "backend": "serial",
        "data": data,
        "objective": objective or {"kind": "logistic", "l2": 0.01},
        "sgd": {"steps": 300, "step_size": 0.05},
        "averaging": {"every": 10},
        "eval": {"every": 100},
        **top,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _numbers(trace: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in trace]


def _run(config: Path, out: Path, *extra: str) -> list[dict[str, str]]:
    result = run_cli("run", str(config), "--out", str(out), *extra)
    assert result.returncode == 0, result.stderr
    name = yaml.safe_load(config.read_text())["name"]
    return read_trace(out / name / "trace.csv")


def _table(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, 4))
    y = (X @ np.array([1.0, -1.0, 0.5, 0.0]) > 0).astype(float)
    return X, y


def test_npz_npy_csv_and_svmlight_give_the_same_trace(tmp_path: Path) -> None:
    X, y = _table()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    np.save(tmp_path / "d.npy", np.column_stack([y, X]))
    rows = ["a,b,c,d,label"] + [
        ",".join(repr(float(v)) for v in (*x, t)) for x, t in zip(X, y, strict=True)
    ]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "plain.csv").write_text("\n".join(rows[1:]) + "\n")
    dump_svmlight_file(X, y, str(tmp_path / "d.svm"))
    sources = {
        "npz": {"path": "d.npz"},
        "npy": {"path": "d.npy", "label": 0},
        "csv": {"path": "d.csv", "label": "label"},
        "plain": {"path": "plain.csv", "header": False},
        "svm": {"path": "d.svm"},
    }
    traces = {}
    for name, data in sources.items():
        config = _config(tmp_path / f"{name}.yaml", {"kind": "file", **data}, name=name)
        traces[name] = _numbers(_run(config, tmp_path / "out"))
    for name in ("npy", "csv", "plain"):
        assert traces[name] == traces["npz"], name
    # svmlight is read sparse: the lazy L2 scaling of the CSR loop rounds differently.
    for a, b in zip(traces["svm"], traces["npz"], strict=True):
        assert float(a["loss"]) == pytest.approx(float(b["loss"]), rel=1e-9)
        assert float(a["dist_opt_sq"]) == pytest.approx(float(b["dist_opt_sq"]), rel=1e-6)


@pytest.mark.parametrize("l2", [0.0, 0.001])
def test_svmlight_copy_of_a_bundled_set_gives_the_same_trace(tmp_path: Path, l2: float) -> None:
    X, y = load_breast_cancer(return_X_y=True)
    dump_svmlight_file(X, y, str(tmp_path / "bc.svm"))
    common = {"test_fraction": 0.2, "standardize": "none", "seed": 5}
    objective = {"kind": "logistic", "l2": l2}
    sgd = {"steps": 300, "step_size": 1e-6}
    bundled = _config(
        tmp_path / "b.yaml", {"kind": "bundled", "name": "breast_cancer", **common},
        objective, name="b", sgd=sgd,
    )  # fmt: skip
    svm = _config(
        tmp_path / "s.yaml", {"kind": "file", "path": "bc.svm", **common},
        objective, name="s", sgd=sgd,
    )  # fmt: skip
    a, b = _numbers(_run(bundled, tmp_path)), _numbers(_run(svm, tmp_path))
    assert a[-1]["test_accuracy"] and float(a[-1]["loss"]) < float(a[0]["loss"])
    # Without L2 the CSR loop does the dense loop's arithmetic, but the dense dot product sums
    # in vector lanes and the CSR one in gather order, so only the last bits may differ. With
    # L2 the CSR loop applies the decay lazily: equal to rounding over 300 steps.
    rel = 1e-12 if l2 == 0.0 else 1e-7
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for column in ra:
            if ra[column] in ("", None) or rb[column] in ("", None):
                assert ra[column] == rb[column], column
            else:
                assert float(ra[column]) == pytest.approx(float(rb[column]), rel=rel), column


def _write(text: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(text)


def _save_npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.savez(path, **arrays)


def _save_npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: np.save(path, array)


BAD_DATA = [
    ("ragged.csv", _write("a,b,y\n1,2,0\n3,4\n"), {}, "ragged.csv:3: ragged row: 2 fields"),
    ("nan.csv", _write("a,b,y\n1,2,0\n3,nan,1\n"), {}, "nan.csv:3, column 'b': nan is not"),
    ("text.csv", _write("1,2,0\n3,x,1\n"), {"header": False}, "text.csv:2, column 2: 'x'"),
    ("labels.csv", _write("a,y\n1,0\n2,2\n3,1\n"), {}, "needs labels -1/+1 or 0/1; found 3"),
    ("empty.csv", _write(""), {}, "empty.csv: the file is empty"),
    ("header.csv", _write("a,b,y\n"), {}, "header.csv: no data rows"),
    ("noname.csv", _write("a,b\n1,0\n"), {"label": "y"}, "'y' is not a column name"),
    ("bad.svm", _write("1 1:0.5\n-1 2:abc\n"), {}, "bad.svm:2:"),
    ("nan.svm", _write("# c\n1 1:0.5\n\n-1 2:nan\n"), {}, "nan.svm:4: a NaN or infinite"),
    ("wide.svm", _write("1 1:1\n-1 9:2\n"), {"n_features": 5}, "wide.svm: dimension mismatch"),
    ("mismatch.npz", _save_npz(X=np.ones((5, 3)), y=np.ones(4)), {}, "5 rows of features but 4"),
    ("nolabels.npz", _save_npz(X=np.ones((5, 3))), {}, "needs labels; set data.label"),
    ("inf.npy", _save_npy(np.array([[1.0, 0.0], [np.inf, 1.0]])), {}, "inf.npy: row 2 holds"),
    ("flat.npy", _save_npy(np.ones(4)), {}, "flat.npy: expected a 2-D numeric array"),
    ("data.xyz", _write("1"), {}, "cannot tell the format from the suffix '.xyz'"),
]


@pytest.mark.parametrize(
    ("name", "make", "keys", "message"), BAD_DATA, ids=[b[0] for b in BAD_DATA]
)
def test_bad_data_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, name: str, make: Callable[[Path], None], keys: dict, message: str
) -> None:
    make(tmp_path / name)
    label = {"label": "y"} if name.endswith(".csv") and keys.get("header", True) else {}
    config = _config(tmp_path / "c.yaml", {"kind": "file", "path": name, **label, **keys})
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    cli = run_cli if name == "ragged.csv" else cli_in_process
    result = cli("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_file_and_wrong_label_kind_for_mlp(tmp_path: Path) -> None:
    config = _config(tmp_path / "c.yaml", {"kind": "file", "path": "nope.npz"})
    result = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert (
        result.returncode == 2 and f"data file {tmp_path / 'nope.npz'} not found" in result.stderr
    )
    np.savez(tmp_path / "r.npz", X=np.ones((4, 2)), y=np.array([0.5, 1.0, 2.0, 0.0]))
    config = _config(tmp_path / "m.yaml", {"kind": "file", "path": "r.npz"}, {"kind": "mlp"})
    result = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "needs integer class labels" in result.stderr


def test_relative_path_is_resolved_against_the_config_and_saved_absolute(tmp_path: Path) -> None:
    X, y = _table()
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", X=X, y=y)
    config = _config(tmp_path / "sub" / "c.yaml", {"kind": "file", "path": "d.npz"})
    _run(config, tmp_path / "out")  # run from the repository root, not from sub/
    saved = yaml.safe_load((tmp_path / "out" / "f" / "config.yaml").read_text())
    assert saved["data"]["path"] == str(tmp_path / "sub" / "d.npz")


def test_quadratic_with_a_data_set_is_a_config_error(tmp_path: Path) -> None:
    config = _config(tmp_path / "q.yaml", {"kind": "gaussian_linear"}, {"kind": "quadratic"})
    result = run_cli("run", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "data.kind must be one of none for objective.kind quadratic" in result.stderr


def test_optimum_is_cached_per_data_and_objective(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    config = _config(tmp_path / "c.yaml", {"kind": "bundled", "name": "breast_cancer"})
    env = {"PARSGD_CACHE": str(cache)}
    first = run_cli("run", str(config), "--out", str(tmp_path / "a"), env=env)
    assert first.returncode == 0, first.stderr
    entries = list((cache / "optima").glob("*.npy"))
    assert len(entries) == 1
    second = run_cli("run", str(config), "--out", str(tmp_path / "b"), env=env)
    assert second.returncode == 0
    assert list((cache / "optima").glob("*.npy")) == entries
    a = _numbers(read_trace(tmp_path / "a" / "f" / "trace.csv"))
    assert a == _numbers(read_trace(tmp_path / "b" / "f" / "trace.csv"))
    third = run_cli("run", str(config), "--set", "objective.l2=0.02", "--out", str(tmp_path / "c"),
                    env=env)  # fmt: skip
    assert third.returncode == 0
    assert len(list((cache / "optima").glob("*.npy"))) == 2
