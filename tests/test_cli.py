"""``parsgd run`` as a user runs it: a subprocess, then the files it wrote."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from conftest import ROOT, cli_in_process, run_cli, write_config

from parsgd.engine.rundir import TRACE_COLUMNS, read_trace


def test_quickstart_runs_and_writes_the_four_files(tmp_path: Path) -> None:
    done = run_cli("run", "configs/quickstart.yaml", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    run_dir = tmp_path / "quickstart"
    assert {p.name for p in run_dir.iterdir() if not p.name.startswith(".")} == {
        "config.yaml",
        "run.json",
        "trace.csv",
        "log.txt",
    }
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "completed"
    assert len(record["pids"]) == record["workers"] >= 1
    assert record["coordinator_pid"] not in record["pids"]
    rows = read_trace(run_dir / "trace.csv")
    assert list(rows[0]) == list(TRACE_COLUMNS)
    log = (run_dir / "log.txt").read_text()
    for rank in range(record["workers"]):
        assert f"worker {rank} started" in log


def test_set_and_out_override_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    done = run_cli(
        "run",
        str(config),
        "--set",
        "averaging.every=end",
        "--set",
        "workers=1",
        "--set",
        "name=custom",
        "--out",
        str(tmp_path / "res"),
    )
    assert done.returncode == 0, done.stderr
    saved = (tmp_path / "res" / "custom" / "config.yaml").read_text()
    assert "every: end" in saved and "workers: 1" in saved
    rows = read_trace(tmp_path / "res" / "custom" / "trace.csv")
    assert {r["syncs"] for r in rows if r["step"] != "400"} == {"0"}
    assert all(float(r["variance"]) == 0.0 for r in rows)


@pytest.mark.parametrize(
    ("sections", "overrides", "needle"),
    [
        ({"bogus": 1}, [], "unknown key bogus"),
        ({"workers": 0}, [], "workers must be"),
        ({"averaging": {"every": -1}}, [], "averaging.every must be"),
        ({"sgd": {"step_size": "big"}}, [], "sgd.step_size must be"),
        ({"data": {"kind": "gaussian_linear", "dd": 3}}, [], "did you mean data.d?"),
        ({}, ["sgd.steps=ten"], "sgd.steps must be"),
        ({}, ["nodot"], "dotted.key=value"),
    ],
)
def test_bad_config_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, sections: dict, overrides: list[str], needle: str
) -> None:
    config = write_config(tmp_path / "c.yaml", **sections)
    sets = [arg for item in overrides for arg in ("--set", item)]
    out = tmp_path / "out"
    # The first through a subprocess (the command line's exit and stderr), the rest through
    # the CLI's main in this process: the same checks, without the start-up.
    cli = run_cli if needle == "unknown key bogus" else cli_in_process
    done = cli("run", str(config), *sets, "--out", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not out.exists()


def test_missing_config_file(tmp_path: Path) -> None:
    done = run_cli("run", str(tmp_path / "absent.yaml"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and "absent.yaml not found" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unwritable_output_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = run_cli("run", "configs/quickstart.yaml", "--out", str(blocker / "sub"))
    assert done.returncode == 2 and "not a directory" in done.stderr


def test_dry_run_prints_the_schedule_and_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", averaging={"every": 30})
    done = run_cli("run", str(config), "--dry-run", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "# averaging steps: 30, 60, 90, 120, 150, ..., 300, 330, 360, 390, 400" in done.stdout
    assert "# syncs per trial: 14" in done.stdout
    assert not (tmp_path / "out").exists()


def test_divergence_ends_the_run_as_diverged(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", sgd={"steps": 2000, "step_size": 0.9})
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 3, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "diverged" and "smaller sgd.step_size" in record["reason"]
    assert "stability bound" in done.stderr  # the advisory warned before the run


def test_readme_names_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    # parsgd alone for the quickstart; the test tools with the command that runs the tests.
    assert "pip install -e . && parsgd run configs/quickstart.yaml" in readme
    assert "pip install -e '.[dev]' && python -m pytest -n 2" in readme
    assert "python -m pytest -n 2" in (ROOT / ".ci" / "run").read_text()  # CI runs the same


def test_a_run_starts_without_the_cyclic_collector_and_turns_it_back_on(tmp_path: Path) -> None:
    """Start-up runs with the collector off (~120 ms of a 0.8 s start), then freezes what it
    made and turns it on before the run; a command that fails before a run leaves it on."""
    gc.unfreeze()
    config = write_config(tmp_path / "c.yaml", backend="serial", trials=1)
    done = cli_in_process("run", str(config), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.unfreeze()
    failed = cli_in_process("run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o"))
    assert failed.returncode == 2
    assert gc.isenabled() and gc.get_freeze_count() == 0
