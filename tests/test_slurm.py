"""``parsgd sweep --slurm``: the sbatch text (golden files), safe scripts, a real SLURM cluster.

The cluster (two emulated nodes, ``tests/slurm_cluster.py``) needs Debian's ``slurm-wlm``
and ``munge`` and root (``.ci/run`` installs
them); elsewhere they skip and say why. Regenerate the golden file with
``PARSGD_UPDATE_GOLDEN=1 python -m pytest tests/test_slurm.py``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, skip_unless_available, wait_until, write_config
from slurm_cluster import LocalSlurm, unavailable_reason

from parsgd.config.load import resolve, validate
from parsgd.config.spec import RunSpec
from parsgd.engine.backends.mpi_setup import pmi1_safe_netmod
from parsgd.engine.rundir import read_trace
from parsgd.sweep.multinode import step_command
from parsgd.sweep.sbatch import SbatchOptions, make_sbatch_script
from parsgd.sweep.slurm import group_by_nodes, script_name
from parsgd.sweep.spec import Point
from parsgd.sweep.state import read_index

GOLDEN = Path(__file__).parent / "golden" / "sweep.sbatch"
GOLDEN_MULTINODE = Path(__file__).parent / "golden" / "sweep-nodes2.sbatch"
GRID = {"averaging.every": [1, 10, 100, "end"], "sgd.step_size": [0.01, 0.02, 0.05]}


def _golden_options(**changes: Any) -> SbatchOptions:
    options = SbatchOptions(
        job_name="parsgd-averaging",
        tasks=6,
        runs=12,
        cpus_per_task=4,
        time="00:30:00",
        log_dir=Path("/scratch/results/averaging/slurm"),
        workdir=Path("/home/ada/my project"),
        command=(
            "/home/ada/my project/.venv/bin/python",
            "-m",
            "parsgd",
            "sweep",
            "/home/ada/my project/sweeps/averaging.yaml",
            "--array-task",
            "/scratch/results/averaging/slurm/tasks-20260101-000000-1.json",
        ),
        array_parallelism=3,
        mem="2G",
        partition="short",
        signal_s=90,
    )
    return dataclasses.replace(options, **changes)


@pytest.mark.parametrize(
    ("golden", "changes"),
    [
        (GOLDEN, {}),
        (
            GOLDEN_MULTINODE,
            {
                "nodes": 2,
                "log_dir": Path("/scratch/my results/100%/slurm"),
                "account": "proj-42",
                "qos": "normal",
                "constraint": "skylake&ib",
                "extra": ("--exclusive", "--mail-type=END"),
                "setup": ("module load mpich", "source '/home/ada/my project/.venv/bin/activate'"),
            },
        ),
    ],
)
def test_sbatch_script_matches_golden_file(golden: Path, changes: dict[str, Any]) -> None:
    options = _golden_options(**changes)
    text = make_sbatch_script(options)
    if os.environ.get("PARSGD_UPDATE_GOLDEN"):
        # Never a pass: comparing with the file just written would prove nothing.
        old = golden.read_text() if golden.exists() else ""
        golden.write_text(text)
        pytest.fail(
            f"golden file rewritten ({'changed' if old != text else 'unchanged'}); "
            "review `git diff tests/golden` and rerun without PARSGD_UPDATE_golden"
        )
    assert text == golden.read_text()
    assert make_sbatch_script(options) == text  # pure


def write_sweep(tmp_path: Path, grid: dict[str, Any], steps: int = 400) -> Path:
    base = write_config(
        tmp_path / "base.yaml", workers=1, sgd={"steps": steps}, eval={"every": steps // 8}
    )
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "avg", "base": base.name, "grid": grid}))
    return path


def test_dry_run_writes_the_script_and_tasks_without_submitting(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, GRID)
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run",
        "--cpus-per-task", "1", "--runs-per-task", "5", "--array-parallelism", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = (out / "avg" / "sweep.sbatch").read_text()
    assert "#SBATCH --array=0-2%2\n" in script
    assert "#SBATCH --cpus-per-task=1\n" in script
    assert f"exec {sys.executable} -m parsgd sweep {sweep.resolve()} --array-task " in script
    (tasks_file,) = (out / "avg" / "slurm").glob("tasks-*.json")
    tasks = json.loads(tasks_file.read_text())["tasks"]
    assert [len(t) for t in tasks] == [5, 5, 2]
    assert {p["config"]["workers"] for t in tasks for p in t} == {1}
    assert not (out / "avg" / "index.csv").exists()  # nothing ran


def test_workers_more_than_cpus_per_task_is_refused(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"workers": [1, 4]})
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run", "--cpus-per-task", "2"
    )
    assert done.returncode == 2
    assert "sweep point 2: workers 4 is more than --cpus-per-task 2" in done.stderr
    assert not out.exists()


# (flag, value, what the one-line error says): each must be refused before anything is written.
BAD_SETTINGS = [
    ("--time", "01:00:00\ntouch INJECTED", "control character"),
    ("--time", "1 hour", "must be a SLURM time"),
    ("--time", "$(touch INJECTED)", "must be a SLURM time"),
    ("--mem", "4", "must be a size with a unit"),
    ("--mem", "4G --wrap=x", "must be a size with a unit"),
    ("--partition", "short fast", "must be a SLURM name"),
    ("--partition", "short\r", "control character"),
    ("--account", "`id`", "must be a SLURM name"),
    ("--qos", "q;x", "must be a SLURM name"),
    ("--constraint", "a b", "feature expression"),
    ("--sbatch", "exclusive", "must look like --name or --name=value"),
    ("--sbatch", "--comment=a b", "must look like --name or --name=value"),
    ("--sbatch", "--comment=x\n#", "control character"),
    ("--sbatch", "--output=elsewhere", "--output is not allowed as an extra flag"),
    ("--sbatch", "--time=5", "use --time"),
    ("--setup", "module load x\ntouch INJECTED", "control character"),
    ("--setup", "echo \x1b[2J", "control character"),
    ("--setup", "  #SBATCH --array=0-999", "may not be an #SBATCH directive"),
    ("--signal-s", "70000", "at most 65535"),
    ("--mpi", "pmi2 --x", "--mpi plugin name"),
]


@pytest.mark.parametrize(("flag", "value", "message"), BAD_SETTINGS)
def test_bad_slurm_settings_are_refused_with_one_line(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01]})
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run", f"{flag}={value}"
    )
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr and flag in done.stderr
    assert not out.exists()
    assert not list(tmp_path.rglob("INJECTED"))


def test_out_path_with_a_newline_is_refused(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01]})
    out = tmp_path / "nl\ntouch INJECTED\n#"
    done = run_cli("sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run")
    assert done.returncode == 2
    assert done.stderr.startswith("parsgd: error: --out contains a control character")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.rglob("INJECTED"))


def test_sweep_file_slurm_settings_and_command_line_overrides(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01, 0.02]})
    spec = yaml.safe_load(sweep.read_text())
    spec["slurm"] = {
        "time": "0-00:20",
        "account": "proj",
        "qos": "low",
        "constraint": "avx2",
        "mem": "1G",
        "sbatch": ["--exclusive"],
        "setup": "module load mpich\nexport OMP_NUM_THREADS=1",
        "runs_per_task": 2,
    }
    sweep.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run", "--qos=high",
        "--cpus-per-task", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = (out / "avg" / "sweep.sbatch").read_text()
    for line in (
        "#SBATCH --time=0-00:20",
        "#SBATCH --account=proj",
        "#SBATCH --qos=high",
        "#SBATCH --constraint=avx2",
        "#SBATCH --mem=1G",
        "#SBATCH --exclusive",
        "#SBATCH --array=0-0",
        "module load mpich",
        "export OMP_NUM_THREADS=1",
    ):
        assert line + "\n" in script
    spec["slurm"] = {"time": "soon"}
    sweep.write_text(yaml.safe_dump(spec))
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "o2"), "--slurm", "--dry-run")
    assert done.returncode == 2
    assert f"{sweep}: slurm.time must be a SLURM time" in done.stderr
    spec["slurm"] = {"partitio": "x"}
    sweep.write_text(yaml.safe_dump(spec))
    done = run_cli("sweep", str(sweep), "--list")
    assert (
        done.returncode == 2
        and "slurm.partitio is not a SLURM setting; did you mean partition?" in done.stderr
    )


def test_dry_run_hint_is_quoted(tmp_path: Path) -> None:
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01]})
    out = tmp_path / "my out $(x) 'q'"
    done = run_cli("sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run")
    assert done.returncode == 0, done.stderr
    hint = done.stdout.split("submit: ", 1)[1].strip()
    assert shlex.split(hint) == ["sbatch", str(out.resolve() / "avg" / "sweep.sbatch")]


def _spec(name: str, nodes: int) -> RunSpec:
    return RunSpec.from_resolved(resolve(validate({"name": name, "nodes": nodes, "workers": 1})))


def test_points_group_into_one_array_per_node_count(tmp_path: Path) -> None:
    """A sweep mixing node counts: one array per count, points in sweep order; the srun step."""
    points = [Point(i, {}, _spec(f"p{i}", nodes=n)) for i, n in enumerate([1, 2, 1, 4, 2])]
    groups = group_by_nodes(points)
    assert {n: [p.index for p in g] for n, g in groups.items()} == {1: [0, 2], 2: [1, 4], 4: [3]}
    assert [script_name(n) for n in groups] == [
        "sweep.sbatch", "sweep-nodes2.sbatch", "sweep-nodes4.sbatch"
    ]  # fmt: skip
    frozen = {"mpi": "pmix", "nodes": 2, "cpus_per_task": 3}
    command = step_command(frozen, tmp_path / "p.yaml", tmp_path)
    assert command[:5] == [
        "srun", "--mpi=pmix", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=3",
    ]  # fmt: skip
    assert command[5:] == [sys.executable, "-m", "parsgd", "run", str(tmp_path / "p.yaml"),
                           "--out", str(tmp_path)]  # fmt: skip


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    skip_unless_available("slurm", unavailable_reason())
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _wait_for_job(cluster: LocalSlurm, job_id: str, timeout_s: float = 180) -> None:
    assert wait_until(lambda: not cluster.squeue(job_id), timeout_s, 0.25), cluster.logs()


def _job_id(stdout: str) -> str:
    assert stdout.startswith("submitted job array "), stdout
    return stdout.split()[3].rstrip(":")


def _figures(index: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_index(index)]


def test_sweep_as_job_array_matches_local_run(tmp_path: Path, slurm: LocalSlurm) -> None:
    sweep = write_sweep(tmp_path, GRID)
    local = run_cli("sweep", str(sweep), "--out", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr

    out = tmp_path / "slurm"
    tic = time.monotonic()
    submitted = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm",
        "--cpus-per-task", "1", "--runs-per-task", "2", "--time", "10",
        env=slurm.env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    status = run_cli("sweep", str(sweep), "--out", str(out), "--status", env=slurm.env)
    assert "squeue:" in status.stdout or "12/12 done" in status.stdout, status.stdout
    _wait_for_job(slurm, job_id)
    wall_s = time.monotonic() - tic
    print(f"SLURM array of 12 runs in 6 tasks: {wall_s:.1f} s from sbatch to the last task")

    sweep_dir = out / "avg"
    rows = read_index(sweep_dir / "index.csv")
    assert [r["status"] for r in rows] == ["completed"] * 12, slurm.logs()
    assert _figures(sweep_dir / "index.csv") == _figures(tmp_path / "local" / "avg" / "index.csv")
    task_ids = set()
    for row in rows:
        record = json.loads((sweep_dir / row["run_id"] / "run.json").read_text())
        assert record["slurm_array_job_id"] == job_id
        assert record["workers"] == 1
        task_ids.add(record["slurm_array_task_id"])
    assert task_ids == {str(i) for i in range(6)}

    status = run_cli("sweep", str(sweep), "--out", str(out), "--status", env=slurm.env)
    assert status.returncode == 0
    assert "12/12 done (12 completed)" in status.stdout
    again = run_cli("sweep", str(sweep), "--out", str(out), "--slurm", env=slurm.env)
    assert again.returncode == 0
    assert "all 12 runs are done; nothing to submit" in again.stdout


def test_time_limit_signal_checkpoints_requeues_and_resumes(
    tmp_path: Path, slurm: LocalSlurm
) -> None:
    """USR1 ahead of the time limit: the run checkpoints, the task requeues itself, resumes."""
    # Long enough (seconds, even with the compiled fast path) for USR1 to land mid-run.
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01]}, steps=6_000_000)
    reference = run_cli("sweep", str(sweep), "--out", str(tmp_path / "ref"))
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "slurm"
    submitted = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--cpus-per-task", "1",
        env=slurm.env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    (run_dir,) = [p.parent for p in (tmp_path / "ref" / "avg").glob("*/run.json")]
    trace = out / "avg" / run_dir.name / "trace.csv"
    assert wait_until(lambda: trace.exists() and len(trace.read_text().splitlines()) > 1, 120)
    signalled = subprocess.run(
        ["scancel", "--batch", "--signal=USR1", f"{job_id}_0"],
        env=slurm.env,
        capture_output=True,
        text=True,
    )
    assert signalled.returncode == 0, signalled.stderr
    _wait_for_job(slurm, job_id)
    record = json.loads((trace.parent / "run.json").read_text())
    log = "\n".join(p.read_text() for p in (out / "avg" / "slurm").glob("*.out"))
    assert record["status"] == "completed", log
    assert record["resumed_from"] is not None, log
    assert "requeued" in log
    columns = ("trial", "step", "samples", "syncs", "loss", "variance", "dist_opt_sq")
    ours = [tuple(r[c] for c in columns) for r in read_trace(trace)]
    theirs = [tuple(r[c] for c in columns) for r in read_trace(run_dir / "trace.csv")]
    assert ours == theirs


HOSTILE = "my out %j %% 'single' \"double\" $(touch INJECTED) `touch INJECTED` #x"


def test_hostile_out_path_runs_safely_under_real_sbatch(tmp_path: Path, slurm: LocalSlurm) -> None:
    """Spaces, %, quotes, $() and backquotes in --out: the array runs and writes there."""
    sweep = write_sweep(tmp_path, {"sgd.step_size": [0.01, 0.02]}, steps=80)
    out = tmp_path / HOSTILE
    submitted = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--cpus-per-task", "1",
        "--setup", "echo setup ran on $SLURMD_NODENAME", "--sbatch=--comment=parsgd-test",
        env=slurm.env,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    _wait_for_job(slurm, job_id)
    sweep_dir = out / "avg"
    rows = read_index(sweep_dir / "index.csv")
    assert [r["status"] for r in rows] == ["completed"] * 2, slurm.logs()
    # The log path's own % stayed literal; only %A_%a expanded (else the task wrote elsewhere
    # or the array never ran); every #SBATCH line after it was still parsed (requeue on).
    logs = sorted(p.name for p in (sweep_dir / "slurm").glob("*.out"))
    assert logs == [f"{job_id}_0.out", f"{job_id}_1.out"]
    assert "setup ran on n" in (sweep_dir / "slurm" / logs[0]).read_text()
    assert not list(tmp_path.rglob("INJECTED")) and not (ROOT / "INJECTED").exists()
    assert out.is_dir() and len(list(tmp_path.iterdir())) == 3  # base.yaml, sweep.yaml, out


def _srun_ranks(slurm: LocalSlurm, mode: str) -> subprocess.CompletedProcess[str]:
    program = Path(__file__).parent / "mpi_link_prog.py"
    return subprocess.run(
        ["srun", "--mpi=pmi2", "-N", "2", "--ntasks-per-node=1", sys.executable, str(program),
         mode],
        env={**slurm.env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_mpi_transport_across_the_two_nodes(slurm: LocalSlurm) -> None:
    """srun --mpi=pmi2 -N 2: one rank on each emulated node; fixed-order sums agree."""
    done = _srun_ranks(slurm, "sums")
    assert done.returncode == 0, done.stdout + done.stderr + slurm.logs()
    found = sorted(re.findall(r"OK rank (\d) of (\d) on \S+ node (n\d) (\w+)", done.stdout))
    # MPICH's OFI network module: UCX's address would overflow the stepd's PMI-1 reads
    assert found == [("0", "2", "n1", "ofi"), ("1", "2", "n2", "ofi")], done.stdout


MPICH_VERSION = "MPICH Version:      5.0.2\nMPICH Device:       ch4:{}\nMPICH configure: --x\n"
SRUN_PMI2 = {"SLURM_MPI_TYPE": "pmi2", "PMI_FD": "11", "PMI_RANK": "0", "PMI_SIZE": "2"}


@pytest.mark.parametrize(
    ("library", "environ", "expected"),
    [
        (MPICH_VERSION.format("ucx ofi"), SRUN_PMI2, "ofi"),
        (MPICH_VERSION.format("ofi"), SRUN_PMI2, "ofi"),
        (MPICH_VERSION.format("ucx"), SRUN_PMI2, None),  # no OFI built in: nothing to choose
        (MPICH_VERSION.format("ucx ofi"), {**SRUN_PMI2, "MPIR_CVAR_CH4_NETMOD": "ucx"}, None),
        (MPICH_VERSION.format("ucx ofi"), {**SRUN_PMI2, "SLURM_MPI_TYPE": "pmix"}, None),
        (MPICH_VERSION.format("ucx ofi"), {"PMI_FD": "5", "PMI_RANK": "0"}, None),  # hydra
        ("Open MPI v5.0.5, package: Open MPI", SRUN_PMI2, None),
    ],
)  # fmt: skip
def test_mpich_under_srun_pmi2_uses_ofi_unless_told(
    library: str, environ: dict[str, str], expected: str | None
) -> None:
    """Slurm's pmi2 stepd reads a PMI-1 request in one 1024-byte read: OFI's short address."""
    assert pmi1_safe_netmod(library, environ) == expected


@pytest.mark.parametrize("mode", ["stopped", "killed"])
def test_a_lost_rank_on_the_other_node_ends_the_step(slurm: LocalSlurm, mode: str) -> None:
    """Rank 1 (node n2) SIGSTOPs or SIGKILLs itself: the step ends, nothing left running."""
    done = _srun_ranks(slurm, mode)
    assert done.returncode != 0
    pids = [int(p) for p in re.findall(r"READY rank \d pid (\d+)", done.stdout)]
    assert len(pids) == 2, done.stdout + done.stderr
    if mode == "stopped":  # the heartbeat names it (a killed rank: srun may end the step first)
        assert re.search(r"node 1 \(host \S+, rank 1\) lost: no heartbeat", done.stdout)
    assert wait_until(lambda: not [p for p in pids if _running(p)], 10)


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def _trace_rows(run_dir: Path) -> list[tuple[str, ...]]:
    columns = ("trial", "step", "samples", "syncs", "syncs_global", "loss", "variance",
               "spread_within_nodes", "spread_between_nodes", "dist_opt_sq")  # fmt: skip
    return [tuple(r[c] for c in columns) for r in read_trace(run_dir / "trace.csv")]


def test_srun_on_two_nodes_equals_serial(tmp_path: Path, slurm: LocalSlurm) -> None:
    """srun --mpi=pmi2 -N 2 parsgd run: one rank per emulated node, serial's bits."""
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=1, averaging={"every": 5, "global_every": 20},
        eval={"every": 20},
    )  # fmt: skip
    serial = run_cli("run", str(config), "--set", "backend=serial", "--out", str(tmp_path / "s"))
    assert serial.returncode == 0, serial.stderr
    done = subprocess.run(
        ["srun", "--mpi=pmi2", "-N", "2", "--ntasks-per-node=1", sys.executable, "-m", "parsgd",
         "run", str(config), "--set", "backend=mpi", "--out", str(tmp_path / "m")],
        env={**slurm.env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=180, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr + slurm.logs()
    assert _trace_rows(tmp_path / "m" / "t") == _trace_rows(tmp_path / "s" / "t")
    record = json.loads((tmp_path / "m" / "t" / "run.json").read_text())
    assert [n["rank"] for n in record["mpi_ranks"]] == [0, 1]


def test_multi_node_sweep_through_slurm(tmp_path: Path, slurm: LocalSlurm) -> None:
    """A sweep mixing a one-node and a two-node point: two arrays; the 2-node run is an
    srun step of one rank per node and matches serial with nodes: 2."""
    base = write_config(
        tmp_path / "base.yaml", workers=1, sgd={"steps": 400},
        averaging={"every": 5, "global_every": 20}, eval={"every": 50},
    )  # fmt: skip
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "nodes", "base": base.name,
        "zip": {"nodes": [1, 2], "backend": ["serial", "mpi"]},
        "slurm": {"mpi": "pmi2", "time": "5"},
    }))  # fmt: skip
    out = tmp_path / "out"
    submitted = run_cli("sweep", str(sweep), "--out", str(out), "--slurm", env=slurm.env)
    assert submitted.returncode == 0, submitted.stderr
    lines = [line for line in submitted.stdout.splitlines() if line.startswith("submitted")]
    assert len(lines) == 2 and "of 2 nodes x 1 CPUs" in lines[1], submitted.stdout
    for line in lines:
        _wait_for_job(slurm, _job_id(line))
    sweep_dir = out / "nodes"
    script = (sweep_dir / "sweep-nodes2.sbatch").read_text()
    assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1\n" in script
    rows = read_index(sweep_dir / "index.csv")
    log = "\n".join(p.read_text() for p in (sweep_dir / "slurm").glob("*.out"))
    assert [r["status"] for r in rows] == ["completed", "completed"], log + slurm.logs()
    two = next(r["run_id"] for r in rows if r["nodes"] == "2")
    record = json.loads((sweep_dir / two / "run.json").read_text())
    assert record["backend"] == "mpi" and len(record["mpi_ranks"]) == 2
    assert "srun --mpi=pmi2 --nodes=2" in log
    reference = run_cli(
        "run", str(sweep_dir / "slurm" / "points" / f"{two}.yaml"), "--set", "backend=serial",
        "--out", str(tmp_path / "ref"),
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    assert _trace_rows(sweep_dir / two) == _trace_rows(tmp_path / "ref" / two)


def test_a_killed_rank_on_the_other_node_fails_the_run_naming_it(
    tmp_path: Path, slurm: LocalSlurm
) -> None:
    """SIGKILL to rank 1 (node n2) of an srun run: rank 0 records failed, naming node 1 by
    host and rank; every rank ends; nothing is left running."""
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=1, trials=1,
        sgd={"steps": 3_000_000, "step_size": 0.01},
        averaging={"every": 5, "global_every": 100}, eval={"every": 50_000},
    )  # fmt: skip
    out = tmp_path / "m"
    proc = subprocess.Popen(
        ["srun", "--mpi=pmi2", "-N", "2", "--ntasks-per-node=1", sys.executable, "-m", "parsgd",
         "run", str(config), "--set", "backend=mpi", "--out", str(out)],
        env={**slurm.env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    trace = out / "t" / "trace.csv"
    try:
        assert wait_until(lambda: trace.exists() and len(trace.read_text().splitlines()) >= 3, 120)
        record = json.loads((out / "t" / "run.json").read_text())
        assert record["status"] == "running"
        pids = record["pids"]
        os.kill(pids[1], signal.SIGKILL)
        tic = time.monotonic()
        proc.wait(timeout=60)
        print(f"killed rank: srun over {time.monotonic() - tic:.1f} s after the SIGKILL")
    finally:
        proc.kill()
        proc.wait()
    record = json.loads((out / "t" / "run.json").read_text())
    assert record["status"] == "failed", record
    assert re.search(r"node 1 \(host \S+, rank 1\) lost", record["reason"]), record["reason"]
    assert wait_until(lambda: not [p for p in pids if _running(p)], 10)


@pytest.mark.parametrize(("sbatch_args", "workers"), [(["-n", "1"], 1), (["-c", "2"], 2)])
def test_run_inside_an_allocation_uses_its_cpus(
    tmp_path: Path, slurm: LocalSlurm, sbatch_args: list[str], workers: int
) -> None:
    config = write_config(tmp_path / "c.yaml", workers="auto")
    command = f"{sys.executable} -m parsgd run {config} --out {tmp_path / 'out'}"
    submitted = subprocess.run(
        ["sbatch", "--parsable", *sbatch_args, "-o", str(tmp_path / "job.out"), "--wrap", command],
        env=slurm.env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    _wait_for_job(slurm, job_id)
    record = json.loads((tmp_path / "out" / "t" / "run.json").read_text())
    assert record["status"] == "completed", (tmp_path / "job.out").read_text()
    assert record["workers"] == workers
    assert record["slurm_job_id"] == job_id
