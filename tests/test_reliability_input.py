"""Bad input (issue 14, classes 12, 14, 15, 18, 19, 22): one line, exit 2, nothing written.

Each case drives ``parsgd`` as a user would and ends by checking that the user's files are
unchanged and that no results directory or temporary file appeared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import cli_in_process, run_cli, write_config
from reliability_helpers import leftovers, one_line_error, snapshot

from parsgd.config.limits import MAX_MEETINGS, MAX_STREAM_BATCH_VALUES, MAX_SWEEP_POINTS


def _refused(
    tmp_path: Path,
    config: Path,
    *words: str,
    extra: tuple[str, ...] = (),
    out: str = "out",
    in_process: bool = False,
) -> None:
    """``parsgd run`` refuses ``config`` with one line naming ``words`` and touches nothing.

    ``in_process``: through the CLI's main in this process (the same checks, without a
    subprocess's start-up), for the cases after the first of a family; hostile YAML, which
    could take a process down, always gets its own process."""
    before = snapshot(tmp_path)
    command = ("run", str(config), "--out", str(tmp_path / out), *extra)
    done = cli_in_process(*command) if in_process else run_cli(*command, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    one_line_error(done.stderr, *words)
    assert snapshot(tmp_path) == before  # the user's files as they were
    assert not (tmp_path / out).exists() and not leftovers(tmp_path)


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        name, prev = chr(97 + i), chr(96 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    lines.append("sgd: {steps: *i}")
    return "\n".join(lines) + "\n"


YAML_CASES = {
    # 9^9 values from 386 bytes: refused at load, and the message stays short.
    "billion_laughs": (_billion_laughs(), "aliases are expanded"),
    "nested_5000": ("sgd: {steps: " + "[" * 5000 + "]" * 5000 + "}\n", "nested deeper than"),
    "empty": ("", "config file is empty"),
    "only_comments": ("# nothing here\n", "config file is empty"),
    "long_value": (f"name: {'x' * 200_000}\n", "name must be"),
}


@pytest.mark.parametrize("case", list(YAML_CASES))
def test_hostile_or_empty_yaml_is_one_short_line(tmp_path: Path, case: str) -> None:
    text, words = YAML_CASES[case]
    config = tmp_path / "c.yaml"
    config.write_text(text)
    _refused(tmp_path, config, words, in_process=case in ("only_comments", "long_value"))


def test_non_utf8_config_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_bytes(b"seed: 1\nname: \xff\xfe\n")
    _refused(tmp_path, config, "c.yaml:2", "not UTF-8")


RANGE_CASES = {
    # 2^40 trace rows: refused before a plan is built, even for --dry-run.
    "steps_2_40": ({"sgd": {"steps": 2**40}, "eval": {"every": 1}}, str(MAX_MEETINGS)),
    "growth_hang": (
        {"sgd": {"steps": 10**9}, "averaging": {"every": 10, "growth": 1.0000001}},
        str(MAX_MEETINGS),
    ),
    "record_every_step": ({"sgd": {"steps": 10**8}, "eval": {"every": 1}}, str(MAX_MEETINGS)),
    "stream_batch": (
        {
            "data": {"kind": "gaussian_linear", "stream": True, "d": 100},
            "sgd": {"steps": 10, "batch_size": 10**12},
        },
        str(MAX_STREAM_BATCH_VALUES),
    ),
}


@pytest.mark.parametrize("case", list(RANGE_CASES))
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_ranges_that_would_be_materialised_are_bounded(
    tmp_path: Path, case: str, dry_run: bool
) -> None:
    sections, limit = RANGE_CASES[case]
    config = write_config(tmp_path / "c.yaml", **sections)
    extra = ("--dry-run",) if dry_run else ()
    _refused(tmp_path, config, limit, "limit", extra=extra, in_process=case != "steps_2_40")


def test_averaging_every_step_over_1e8_steps_is_planned_without_holding_its_rounds(
    tmp_path: Path,
) -> None:
    """Periodic rounds are held as progressions: 10^8 of them are no limit, and --dry-run
    shows their ends without listing them."""
    config = write_config(tmp_path / "c.yaml", sgd={"steps": 10**8}, averaging={"every": 1})
    done = run_cli("run", str(config), "--dry-run", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "# averaging steps: 1, 2, 3, 4, 5, ..., 99999996, 99999997" in done.stdout
    assert "# syncs per trial: 100000000;" in done.stdout


def test_a_huge_sweep_grid_is_refused_with_its_size(tmp_path: Path) -> None:
    write_config(tmp_path / "base.yaml")
    sweep = tmp_path / "s.yaml"
    values = list(range(1, 201))
    grid = {"sgd.steps": values, "eval.every": values, "averaging.every": values}
    sweep.write_text(yaml.safe_dump({"name": "huge", "base": "base.yaml", "grid": grid}))
    before = snapshot(tmp_path)
    for action in ((), ("--list",), ("--status",)):
        done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), *action, timeout=60)
        assert done.returncode == 2, done.stderr
        one_line_error(done.stderr, "8000000 points", str(MAX_SWEEP_POINTS))
    assert snapshot(tmp_path) == before and not (tmp_path / "out").exists()


def test_quadratic_without_a_data_section_runs(tmp_path: Path) -> None:
    config = tmp_path / "q.yaml"
    config.write_text(
        yaml.safe_dump(
            {"name": "q", "objective": {"kind": "quadratic", "d": 4}, "sgd": {"steps": 50}}
        )
    )
    done = run_cli("run", str(config), "--out", str(tmp_path / "out"), "--set", "workers=2")
    assert done.returncode == 0, done.stderr
    saved = yaml.safe_load((tmp_path / "out" / "q" / "config.yaml").read_text())
    assert saved["data"] == {"kind": "none"}
    assert not leftovers(tmp_path)
    # An explicit kind the objective cannot take is still an error, named as written.
    config.write_text(yaml.safe_dump({"objective": {"kind": "quadratic"}, "data": {"n": 5}}))
    _refused(tmp_path, config, "data.n", out="out2")


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _data_cases(tmp_path: Path) -> dict[str, tuple[Path, dict, tuple[str, ...]]]:
    """name -> (data file, extra data keys, words the error must hold)."""
    X = np.ones((20, 3))
    loop = tmp_path / "loop1.csv"
    loop.symlink_to(tmp_path / "loop2.csv")
    (tmp_path / "loop2.csv").symlink_to(loop)
    big = tmp_path / "big.csv"
    big.write_text("1,2\n3," + "1" * 200_000 + "\n")
    bad_bytes = tmp_path / "bytes.csv"
    bad_bytes.write_bytes(b"1,2\n3,4\n\xff\xfe,5\n")
    index = tmp_path / "index.svm"
    index.write_text("1 1:1\n-1 2147483648:1\n")
    return {
        "complex_X": (_npz(tmp_path / "cx.npz", X=X + 1j, y=np.ones(20)), {}, ("complex",)),
        "complex_y": (_npz(tmp_path / "cy.npz", X=X, y=np.ones(20) * 1j), {}, ("complex",)),
        "string_labels": (
            _npz(tmp_path / "sl.npz", X=X, y=np.array(["a", "b"] * 10)),
            {},
            ("field y", "numeric"),
        ),
        "field_200kB": (big, {"label": 0}, ("big.csv:2", "field larger")),
        "non_utf8_csv": (bad_bytes, {"label": 0}, ("bytes.csv:3", "not UTF-8")),
        "svmlight_2_31": (index, {}, ("index.svm:2", "2^31")),
        "symlink_loop": (loop, {"label": 0}, ("loop1.csv", "symlink")),
    }


@pytest.mark.parametrize(
    "case",
    [
        "complex_X",
        "complex_y",
        "string_labels",
        "field_200kB",
        "non_utf8_csv",
        "svmlight_2_31",
        "symlink_loop",
    ],
)
def test_bad_data_files_are_one_line(tmp_path: Path, case: str) -> None:
    path, extra, words = _data_cases(tmp_path)[case]
    config = tmp_path / "c.yaml"
    data = {"kind": "file", "path": path.name, **extra}
    config.write_text(yaml.safe_dump({"name": "t", "data": data, "sgd": {"steps": 20}}))
    _refused(tmp_path, config, *words, in_process=case != "complex_X")


def test_sweep_list_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    write_config(tmp_path / "base.yaml")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump({"name": "pipe", "base": "base.yaml", "grid": {"seed": list(range(3000))}})
    )
    lister = subprocess.Popen(
        [sys.executable, "-m", "parsgd", "sweep", str(sweep), "--list"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert lister.stdout is not None
    first = lister.stdout.readline()  # like `| head -1`: read a line, then close the pipe
    lister.stdout.close()
    _, stderr = lister.communicate(timeout=120)
    assert first.startswith(b"# sweep pipe")
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr
    assert lister.returncode == 141
    assert not leftovers(tmp_path)
