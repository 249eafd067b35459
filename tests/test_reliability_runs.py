"""Signals, lost runs, lock probes and sweeps (issue 14, classes 7, 8, 16, 17, 20, 21).

Signals are sent only once the run has written trace rows, and the runs are long enough to
still be running then (asserted). Every test ends by checking the user's files and that no
temporary file is left; the autouse fixture checks processes and segments.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, all_gone, run_cli, wait_until, write_config
from reliability_helpers import (
    kill_group,
    leftovers,
    one_line_error,
    snapshot,
    start_run,
    trace_rows,
)

from parsgd.engine.rundir import read_trace, try_lock
from parsgd.sweep.state import RunClaim, _lock_held

_LONG_STEPS = 30_000_000  # ~1.5 s: 3M steps of d = 8 once ended before a signal landed


def _long(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "long.yaml",
        trials=1,
        sgd={"steps": _LONG_STEPS, "step_size": 0.01},
        averaging={"every": 500},
        eval={"every": 300_000},
        checkpoint={"every": 20},
    )


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGHUP,),
        (signal.SIGHUP, signal.SIGHUP),
    ],
    ids=["term-term", "int-int", "term-int", "hup", "hup-hup"],
)
def test_signals_during_shutdown_still_exit_130_with_data_intact(
    tmp_path: Path, signals: tuple[signal.Signals, ...]
) -> None:
    config = _long(tmp_path)
    out = tmp_path / "out"
    proc = start_run(config, out)
    assert wait_until(lambda: trace_rows(out / "t") >= 3, 120)
    assert proc.poll() is None  # still running when signalled
    kill_group(proc, signals[0])
    # Further signals keep coming while it shuts down, until it has exited.
    while len(signals) > 1 and proc.poll() is None:
        kill_group(proc, signals[1])
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.01)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    record = json.loads((out / "t" / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert wait_until(lambda: all_gone(record["pids"]), 5)
    rows = read_trace(out / "t" / "trace.csv")
    assert (out / "t" / "trace.csv").read_bytes().endswith(b"\n") and rows
    assert int(rows[-1]["step"]) < _LONG_STEPS  # stopped mid-run
    if (out / "t" / "checkpoint.npz").exists():  # stopped at a meeting: resumable
        resumed = run_cli("run", str(config), "--out", str(out), "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        steps = [int(row["step"]) for row in read_trace(out / "t" / "trace.csv")]
        assert steps == sorted(set(steps)) and steps[-1] == _LONG_STEPS
    assert not leftovers(tmp_path)


def test_a_run_whose_process_vanished_is_lost_for_resume_and_report(tmp_path: Path) -> None:
    config = _long(tmp_path)
    out = tmp_path / "out"
    proc = start_run(config, out)
    assert wait_until(lambda: (out / "t" / "checkpoint.npz").exists(), 120)
    assert proc.poll() is None
    kill_group(proc, signal.SIGKILL)
    proc.communicate(timeout=30)
    record = json.loads((out / "t" / "run.json").read_text())
    assert record["status"] == "running"  # what a killed process leaves
    assert wait_until(lambda: all_gone(record["pids"]), 10)

    report = run_cli("report", str(out))
    assert report.returncode == 0, report.stderr[-2000:]
    assert "lost" in (out / "report.csv").read_text() + report.stdout
    resumed = run_cli("run", str(config), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "lost" in resumed.stderr
    final = json.loads((out / "t" / "run.json").read_text())
    assert final["status"] == "completed" and final["resumed_from"] is not None
    assert int(read_trace(out / "t" / "trace.csv")[-1]["step"]) == _LONG_STEPS
    assert not leftovers(tmp_path)


_PROBER = """
import sys
from pathlib import Path
from parsgd.sweep.state import _lock_held
run_dir = Path(sys.argv[1])
print("probing", flush=True)
for _ in range(int(sys.argv[2])):
    _lock_held(run_dir)
"""


def test_lock_probes_never_make_a_genuine_claim_fail(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").touch()
    (run_dir / ".claim").touch()
    probers = [
        subprocess.Popen(
            [sys.executable, "-c", _PROBER, str(run_dir), "200000"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    for prober in probers:
        assert prober.stdout is not None and prober.stdout.readline() == "probing\n"
    failures = claims = 0
    # A fixed number of claims, each made while the probers run (checked after).
    while claims < 20_000 and all(p.poll() is None for p in probers):
        fd = try_lock(run_dir / ".lock")
        claim = RunClaim(run_dir)
        failures += (fd is None) + (not claim.acquire())
        claims += 1
        if fd is not None:
            assert _lock_held(run_dir)  # a probe sees a genuine holder
            os.close(fd)
        claim.release()
    for prober in probers:
        prober.kill()
        prober.communicate()
    assert claims > 1000, "the probers ended before the claims could race with them"
    assert failures == 0
    assert not _lock_held(run_dir)

    # And through the command line: --status probing while a sweep claims its points.
    write_config(tmp_path / "base.yaml", trials=1, sgd={"steps": 200})
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: probe\nbase: base.yaml\ngrid: {seed: [1, 2, 3, 4, 5, 6]}\n")
    running = subprocess.Popen(
        [sys.executable, "-m", "parsgd", "sweep", str(sweep), "--out", str(tmp_path / "o")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while running.poll() is None:
        run_cli("sweep", str(sweep), "--out", str(tmp_path / "o"), "--status")
    stdout, stderr = running.communicate()
    assert running.returncode == 0, stderr[-2000:]
    assert "6 completed" in stdout and "another process" not in stdout
    assert not leftovers(tmp_path)


def test_sweep_paths_are_anchored_where_they_were_written(tmp_path: Path) -> None:
    # base.yaml in its own folder reads data.csv from that folder, as `parsgd run` does;
    # the inline config of the second sweep reads its file next to the sweep file.
    configs = tmp_path / "configs"
    configs.mkdir()
    rows = "".join(f"{i % 3},{i * 0.1},{(i * 7) % 5}\n" for i in range(60))
    (configs / "data.csv").write_text(rows)
    (tmp_path / "near.csv").write_text(rows)
    base = {"name": "b", "workers": 2, "data": {"kind": "file", "path": "data.csv", "label": 0}}
    (configs / "base.yaml").write_text(yaml.safe_dump({**base, "sgd": {"steps": 60}}))
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "a.yaml").write_text(
        "name: a\nbase: ../configs/base.yaml\ngrid: {sgd.step_size: [0.01, 0.02]}\n"
    )
    inline = {**base, "data": {**base["data"], "path": "../near.csv"}, "sgd": {"steps": 60}}
    (sweeps / "b.yaml").write_text(
        yaml.safe_dump({"name": "b", "config": inline, "grid": {"seed": [1, 2]}})
    )
    before = snapshot(tmp_path)
    for name, expected in (("a", configs / "data.csv"), ("b", tmp_path / "near.csv")):
        done = run_cli("sweep", str(sweeps / f"{name}.yaml"), "--out", str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr[-2000:]
        assert "no checkpoint" not in done.stderr  # fresh points start quietly
        for saved in (tmp_path / "out" / name).glob("*/config.yaml"):
            assert yaml.safe_load(saved.read_text())["data"]["path"] == str(expected.resolve())
    assert all(snapshot(tmp_path).get(k) == v for k, v in before.items())
    assert not leftovers(tmp_path)


def test_two_sweep_files_with_one_name_do_not_share_a_directory(tmp_path: Path) -> None:
    write_config(tmp_path / "base.yaml", trials=1, sgd={"steps": 100})
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "s.yaml").write_text(
            "name: same\nbase: ../base.yaml\ngrid: {seed: [1, 2]}\n"
        )
    first = run_cli("sweep", str(tmp_path / "one" / "s.yaml"), "--out", str(tmp_path / "out"))
    assert first.returncode == 0, first.stderr[-2000:]
    results = snapshot(tmp_path / "out")
    second = run_cli("sweep", str(tmp_path / "two" / "s.yaml"), "--out", str(tmp_path / "out"))
    assert second.returncode == 2
    one_line_error(second.stderr, str(tmp_path / "one" / "s.yaml"))
    assert snapshot(tmp_path / "out") == results
    again = run_cli("sweep", str(tmp_path / "one" / "s.yaml"), "--out", str(tmp_path / "out"))
    assert again.returncode == 0 and "skipped 2 already done" in again.stdout
    assert not leftovers(tmp_path)


def test_status_without_out_says_where_it_looked(tmp_path: Path) -> None:
    write_config(tmp_path / "base.yaml", trials=1, sgd={"steps": 100})
    name = f"elsewhere-{os.getpid()}"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: {name}\nbase: base.yaml\ngrid: {{seed: [1, 2]}}\n")
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    here = run_cli("sweep", str(sweep), "--status")  # looks in ./results (the repository)
    assert here.returncode == 1
    assert f"no results found at results/{name}" in here.stdout
    assert not (ROOT / "results" / name).exists()
    there = run_cli("sweep", str(sweep), "--status", "--out", str(tmp_path / "out"))
    assert there.returncode == 0 and "2/2 done" in there.stdout
    assert not leftovers(tmp_path)
