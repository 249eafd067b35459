"""Results are never lost (issue 14, classes 2-6, 9-11, 15): symlinks, stale segments,
divergence, reruns, torn traces, leftover temporaries, a small /dev/shm, damaged files.

Every test drives ``parsgd`` and ends by checking the user's files and that no temporary
file is left; the autouse fixture checks processes and segments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import _listed_processes, cli_in_process, run_cli, wait_until, write_config
from reliability_helpers import leftovers, one_line_error, snapshot

from parsgd.engine.rundir import TRACE_COLUMNS, read_trace


def _run(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("run", str(config), "--out", str(out), *extra)


def _completed(tmp_path: Path, **sections: object) -> tuple[Path, Path]:
    """A completed run ``<tmp>/out/t`` and its config."""
    config = write_config(tmp_path / "c.yaml", **sections)  # type: ignore[arg-type]
    done = _run(config, tmp_path / "out")
    assert done.returncode == 0, done.stderr
    return config, tmp_path / "out" / "t"


def test_symlinks_planted_in_a_run_directory_are_never_written_through(tmp_path: Path) -> None:
    config, run_dir = _completed(tmp_path)
    victims = tmp_path / "victims"
    victims.mkdir()
    for name in (".reserve", "trace.csv", "log.txt", "config.yaml", "run.json"):
        victim = victims / name.strip(".")
        victim.write_text(f"precious {name}\n")
        (run_dir / name).unlink(missing_ok=True)
        (run_dir / name).symlink_to(victim)
    for name in ("checkpoint.npz", ".run.json.x.tmp"):
        victim = victims / name.strip(".").replace(".", "_")
        victim.write_text("precious\n")
        (run_dir / name).symlink_to(victim)
    before = snapshot(victims)
    done = _run(config, tmp_path / "out", "--force")
    assert done.returncode == 0, done.stderr
    assert snapshot(victims) == before  # no victim truncated, zeroed or appended to
    for name in ("trace.csv", "log.txt", "config.yaml", "run.json"):
        assert not (run_dir / name).is_symlink() and (run_dir / name).is_file()
    assert len(read_trace(run_dir / "trace.csv")) > 0

    # The lock cannot be replaced while someone might hold it: a symlink there is refused.
    (run_dir / ".lock").unlink()
    (run_dir / ".lock").symlink_to(victims / "log.txt")
    results = snapshot(run_dir)
    done = _run(config, tmp_path / "out", "--force", "--set", "seed=4")
    assert done.returncode == 2
    one_line_error(done.stderr, ".lock", "symlink")
    assert snapshot(victims) == before and snapshot(run_dir) == results
    assert not leftovers(tmp_path)


def _segment_holder(name: str) -> subprocess.Popen[str]:
    """Another process (think: another container) that created ``name`` and holds its lock."""
    code = (
        "import os, sys; from parsgd.locks import lock_fd\n"
        f"fd = os.open('/dev/shm/{name}', os.O_RDWR | os.O_CREAT, 0o600)\n"
        "os.ftruncate(fd, 4096); assert lock_fd(fd); print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_stale_segments_are_judged_by_their_lock_not_by_a_pid(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    # The cleaner never looks at the pid in a name (in another container it names some
    # other process): a locked segment stays, an unlocked one goes whatever its pid says.
    # Pid 1 below, because older parsgd versions running elsewhere on this shared machine
    # still judge by pid and would remove an invisible one themselves.
    live_elsewhere = "parsgd_1_0_Lfeedface"
    # Our own (live) pid, but nobody holds its lock: its creator is gone.
    dead = f"parsgd_{os.getpid()}_0_Ldeadbeef"
    # An old-style name without a lock: nothing proves it dead, so it stays.
    unknown = "parsgd_1_0_c0ffee00"
    holder = _segment_holder(live_elsewhere)
    try:
        (shm / dead).write_bytes(b"\0" * 64)
        (shm / unknown).write_bytes(b"\0" * 64)
        config = write_config(tmp_path / "c.yaml", trials=1, sgd={"steps": 50})
        done = _run(config, tmp_path / "out")
        assert done.returncode == 0, done.stderr
        assert (shm / live_elsewhere).exists(), "a live segment of another namespace was removed"
        assert (shm / unknown).exists()
        assert not (shm / dead).exists()
        assert not leftovers(tmp_path)
    finally:
        holder.communicate("")
        for name in (live_elsewhere, dead, unknown):
            (shm / name).unlink(missing_ok=True)


QUADRATIC = {"data": {"kind": "none"}, "objective": {"kind": "quadratic", "d": 4}}


@pytest.mark.parametrize(
    "config_text",
    [
        # Least squares: the model itself overflows.
        "name: t\nworkers: 2\nsgd: {steps: 2000, step_size: 5.0}\n",
        # The quadratic: the loss overflows to inf while the model may stay finite.
        "name: t\nworkers: 2\nobjective: {kind: quadratic, d: 4}\n"
        "sgd: {steps: 400, step_size: 10.0}\n",
    ],
    ids=["least_squares", "quadratic"],
)
def test_divergence_of_loss_or_model_ends_diverged_and_a_sweep_says_so(
    tmp_path: Path, config_text: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    before = snapshot(tmp_path)
    done = _run(config, tmp_path / "out")
    assert done.returncode == 3, done.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "t" / "run.json").read_text())
    assert record["status"] == "diverged" and "non-finite" in record["reason"]
    assert done.stdout.startswith("diverged:")

    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: sw\nbase: {config.name}\ngrid: {{seed: [1, 2]}}\n")
    swept = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    index = (tmp_path / "out" / "sw" / "index.csv").read_text()
    assert index.count(",diverged,") == 2 and ",completed," not in index, index
    assert "2 diverged" in swept.stdout
    status = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"), "--status")
    assert "diverged" in status.stdout
    assert snapshot(tmp_path) | before == snapshot(tmp_path)  # config and sweep file intact
    assert not leftovers(tmp_path)


def test_a_completed_run_is_never_replaced_without_force(tmp_path: Path) -> None:
    config, run_dir = _completed(tmp_path)
    results = snapshot(run_dir)

    same = _run(config, tmp_path / "out")  # identical: nothing to do
    assert same.returncode == 0 and "already completed" in same.stdout
    changed = _run(config, tmp_path / "out", "--set", "sgd.step_size=0.02")
    assert changed.returncode == 2
    one_line_error(changed.stderr, "--force", "--resume")
    resumed = _run(config, tmp_path / "out", "--resume", "--set", "sgd.step_size=0.02")
    assert resumed.returncode == 2
    one_line_error(resumed.stderr, "different config", "--force")
    assert "starting from the beginning" not in resumed.stderr
    assert snapshot(run_dir) == results  # not one byte of the results changed

    old_hash = json.loads((run_dir / "run.json").read_text())["config_hash"]
    forced = _run(config, tmp_path / "out", "--force", "--set", "sgd.step_size=0.02")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((run_dir / "run.json").read_text())["config_hash"] != old_hash
    assert "step_size: 0.02" in (run_dir / "config.yaml").read_text()
    assert not leftovers(tmp_path)


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding ``c.yaml`` and ``out/t``: a run stopped by a worker fault after its
    periodic checkpoints, resumable. Made once; each test damages its own copy (``_crashed``)."""
    root = tmp_path_factory.mktemp("crashed")
    config = write_config(
        root / "c.yaml",
        trials=1,
        sgd={"steps": 40_000},
        averaging={"every": 100},
        eval={"every": 1000},
        checkpoint={"every": 50},
    )
    done = run_cli(
        "run", str(config), "--out", str(root / "out"), env={"PARSGD_FAULT": "1:30000:raise"}
    )
    assert done.returncode == 1, done.stderr
    assert (root / "out" / "t" / "checkpoint.npz").exists()
    # Made outside any one test's leak check (no_leaks), so checked here.
    assert wait_until(lambda: not _listed_processes([root]), 5.0)
    return root


def _crashed(tmp_path: Path, crashed_run: Path) -> tuple[Path, Path]:
    """This test's own copy of ``crashed_run`` in ``tmp_path``: its config and run directory.
    Nothing in a run directory names where it is, so the copy resumes as the original would."""
    shutil.copytree(crashed_run, tmp_path, symlinks=True, dirs_exist_ok=True)
    return tmp_path / "c.yaml", tmp_path / "out" / "t"


def test_torn_trace_is_reported_by_readers_and_cut_by_resume(
    tmp_path: Path, crashed_run: Path
) -> None:
    config, run_dir = _crashed(tmp_path, crashed_run)
    whole = len(read_trace(run_dir / "trace.csv"))
    with (run_dir / "trace.csv").open("a") as handle:
        handle.write("0,31000,62000,310,0.5,0.1")  # half a row: the disk filled here
    (run_dir / ".checkpoint.npz.k1l2m3.tmp").write_bytes(b"half a checkpoint")
    (run_dir / ".run.json.a1b2c3.tmp").write_text("{")

    report = run_cli("report", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr
    assert "torn last line" in report.stderr
    plot = run_cli("plot", str(tmp_path / "out"), "-o", str(tmp_path / "fig.png"))
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "fig.png").stat().st_size > 0

    resumed = _run(config, tmp_path / "out", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    data = (run_dir / "trace.csv").read_bytes()
    assert data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert all(len(line.split(",")) == len(TRACE_COLUMNS) for line in lines)
    steps = [int(row["step"]) for row in read_trace(run_dir / "trace.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 40_000 and len(steps) > whole
    # The next run removed what killed runs left behind.
    assert not leftovers(tmp_path)
    assert "left by a run that was killed" in (run_dir / "log.txt").read_text()


def _npz_bytes(**arrays: object) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _damaged_checkpoints(good: bytes) -> dict[str, bytes]:
    meta = json.loads(str(np.load(__import__("io").BytesIO(good))["meta"][()]))
    return {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(4096),
        "no_models": _npz_bytes(meta=np.array(json.dumps(meta))),
        "wrong_shape": _npz_bytes(W=np.zeros((3, 5)), meta=np.array(json.dumps(meta))),
        "meta_not_json": _npz_bytes(W=np.zeros((2, 8)), meta=np.array("{not json")),
        "text_models": _npz_bytes(W=np.array([["a"] * 8] * 2), meta=np.array(json.dumps(meta))),
        "meta_missing_keys": _npz_bytes(W=np.zeros((2, 8)), meta=np.array('{"trial": 0}')),
    }


@pytest.mark.parametrize(
    "form",
    [
        "empty",
        "truncated",
        "garbage",
        "no_models",
        "wrong_shape",
        "meta_not_json",
        "text_models",
        "meta_missing_keys",
    ],
)
def test_a_damaged_checkpoint_is_one_line_and_keeps_the_results(
    tmp_path: Path, crashed_run: Path, form: str
) -> None:
    config, run_dir = _crashed(tmp_path, crashed_run)
    good = (run_dir / "checkpoint.npz").read_bytes()
    (run_dir / "checkpoint.npz").write_bytes(_damaged_checkpoints(good)[form])
    before = snapshot(tmp_path)
    # One form through a subprocess (the command line's own exit and stderr); the others
    # through the CLI's main in this process: the same checks, without the start-up.
    command = ("run", str(config), "--out", str(tmp_path / "out"), "--resume")
    resumed = run_cli(*command) if form == "wrong_shape" else cli_in_process(*command)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    one_line_error(resumed.stderr, "checkpoint.npz")
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "bytes", "directory"])
def test_a_damaged_trace_is_one_line_for_resume_report_and_plot(
    tmp_path: Path, crashed_run: Path, damage: str
) -> None:
    config, run_dir = _crashed(tmp_path, crashed_run)
    trace = run_dir / "trace.csv"
    if damage == "garbage":
        trace.write_text("this,is\nnot,a trace\n")
    elif damage == "bytes":
        trace.write_bytes(b"\xff\xfe\x00garbage\n" * 10)
    else:
        trace.unlink()
        trace.mkdir()
    before = snapshot(tmp_path)
    # Each command once through a subprocess (garbage), the other damages in this process.
    cli = run_cli if damage == "garbage" else cli_in_process
    for command in (
        ("run", str(config), "--out", str(tmp_path / "out"), "--resume"),
        ("run", str(config), "--out", str(tmp_path / "out")),
        ("report", str(tmp_path / "out")),
        ("plot", str(tmp_path / "out"), "-o", str(tmp_path / "f.png")),
    ):
        done = cli(*command)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        one_line_error(done.stderr)
    assert snapshot(tmp_path) == before and not leftovers(tmp_path)


def test_a_damaged_run_record_is_one_line_and_reports_still_read(tmp_path: Path) -> None:
    config, run_dir = _completed(tmp_path)
    (run_dir / "run.json").write_text('{"status": "comp')
    before = snapshot(tmp_path)
    for extra in (("--resume",), ()):
        done = _run(config, tmp_path / "out", *extra)
        assert done.returncode == 2, done.stderr[-2000:]
        one_line_error(done.stderr, "run.json", "--force")
    report = run_cli("report", str(tmp_path / "out"))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-2000:]
    assert snapshot(tmp_path) | before == snapshot(tmp_path) and not leftovers(tmp_path)
    assert (run_dir / "run.json").read_text() == '{"status": "comp'


def _small_shm_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``parsgd ARGS`` in a private mount namespace whose /dev/shm is an 8 MiB tmpfs."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a private /dev/shm")
    command = " ".join(
        [
            "mount -t tmpfs -o size=8m tmpfs /dev/shm &&",
            f"{sys.executable} -m parsgd",
            *(f"'{a}'" for a in args),
        ]
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ},
    )
    if "mount:" in done.stderr or "unshare:" in done.stderr:
        pytest.skip(f"cannot make a private /dev/shm here: {done.stderr.strip()}")
    return done


def test_a_small_dev_shm_is_a_one_line_error_before_anything_is_written(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", data={"n": 100_000, "d": 100})
    svm = tmp_path / "wide.svm"
    svm.write_text("1 33554432:1\n-1 1:1\n")  # 30 bytes, 2^25 features
    wide = tmp_path / "w.yaml"
    wide.write_text("name: w\nworkers: 2\ndata: {kind: file, path: wide.svm}\n")
    before = snapshot(tmp_path)
    for path in (config, wide):
        done = _small_shm_run(tmp_path, "run", str(path), "--out", str(tmp_path / "out"))
        assert done.returncode == 2, done.stderr[-2000:]
        one_line_error(done.stderr, "/dev/shm has", "free", "needs at least")
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists() and not leftovers(tmp_path)


def test_disk_full_leaves_only_whole_trace_rows(tmp_path: Path) -> None:
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        config = write_config(
            tmp_path / "c.yaml", trials=1, sgd={"steps": 60_000}, eval={"every": 1}
        )
        done = _run(config, mount)
        assert done.returncode == 1, done.stderr[-2000:]
        run_dir = mount / "t"
        record = json.loads((run_dir / "run.json").read_text())
        assert record["status"] == "failed"
        data = (run_dir / "trace.csv").read_bytes()
        assert data.endswith(b"\n")  # never half a row
        assert all(len(line.split(b",")) == len(TRACE_COLUMNS) for line in data.splitlines())
        assert not leftovers(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
