"""A sweep as SLURM job arrays, one per node count: submission, array tasks, squeue.

    submit host: check the SLURM settings (sbatch.py) and every point (``workers: auto`` =
                 --cpus-per-task), write sweep.json; per node count N, the runs of each array
                 task frozen in slurm/tasks-<stamp>[-nodes<N>].json and the script
                 sweep.sbatch (N = 1) or sweep-nodes<N>.sbatch; ``sbatch --parsable``; record
                 each job id
    array task:  ``python -m parsgd sweep ... --array-task tasks.json`` picks its runs by
                 SLURM_ARRAY_TASK_ID and runs them as a local sweep would (resuming, skipping
                 completed ones), or, on N > 1 nodes, each as an srun step (multinode.py);
                 then rewrites index.csv under the sweep's lock

Ahead of the time limit SLURM sends the task SIGUSR1 (``--signal=B:USR1@S``, B: so that
the batch shell, which ``exec``s parsgd, gets it): the runs checkpoint at their next
averaging point, end ``interrupted``, and the task requeues itself to resume them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from parsgd.config.load import usable_cpus
from parsgd.engine.rundir import write_atomic
from parsgd.errors import ConfigError, ParsgdError
from parsgd.sweep.local import LocalSweep
from parsgd.sweep.multinode import MultiNodeTask
from parsgd.sweep.sbatch import (
    SETTING_KEYS,
    SbatchOptions,
    SlurmSettings,
    check_path,
    check_settings,
    make_sbatch_script,
)
from parsgd.sweep.spec import Point, Sweep, expand_sweep
from parsgd.sweep.state import FINISHED, read_plan, sweep_lock, sweep_states, write_plan

SCRIPT_FILE = "sweep.sbatch"  # the one-node array; N nodes: sweep-nodes<N>.sbatch
_JOBS_FILE = "jobs.json"


class SlurmError(ParsgdError):
    """sbatch or scontrol failed (its message attached)."""


def _chunks(points: list[Point], size: int) -> list[list[Point]]:
    return [points[i : i + size] for i in range(0, len(points), size)]


def slurm_settings(sweep: Sweep, args: argparse.Namespace) -> SlurmSettings:
    """The sweep file's ``slurm:`` settings, each overridden by its command-line flag."""
    from_file = check_settings(sweep.slurm, "slurm.")
    given = {key: getattr(args, key) for key in SETTING_KEYS if getattr(args, key) is not None}
    from_cli = check_settings(given, "--")
    return replace(from_file, **{key: getattr(from_cli, key) for key in given})


def group_by_nodes(points: list[Point]) -> dict[int, list[Point]]:
    """The points grouped by node count, in first-seen order: one job array per shape."""
    groups: dict[int, list[Point]] = {}
    for point in points:
        groups.setdefault(point.spec.nodes, []).append(point)
    return groups


def script_name(nodes: int) -> str:
    """``sweep.sbatch`` for the one-node array, ``sweep-nodes<N>.sbatch`` for N nodes."""
    return SCRIPT_FILE if nodes == 1 else f"sweep-nodes{nodes}.sbatch"


def submit_sweep(sweep: Sweep, args: argparse.Namespace) -> int:
    """Expand, write the task files and scripts (one per shape), and (unless --dry-run) sbatch."""
    settings = slurm_settings(sweep, args)
    check_path("--out", args.out.resolve())
    check_path("the sweep file's path", args.sweep.resolve())
    check_path("the working directory", Path.cwd())
    check_path("the Python interpreter's path", Path(sys.executable))
    points = expand_sweep(sweep, workers=settings.cpus_per_task or usable_cpus())
    shapes = group_by_nodes(points)
    cpus = {n: settings.cpus_per_task or max(p.spec.workers for p in g) for n, g in shapes.items()}
    for point in points:
        if point.spec.nodes > 1 and point.spec.backend != "mpi":
            raise ConfigError(
                f"sweep point {point.index + 1}: nodes {point.spec.nodes} on SLURM runs one MPI "
                "rank per node; set backend: mpi"
            )
        limit = cpus[point.spec.nodes]
        if point.spec.workers > limit:
            raise ConfigError(
                f"sweep point {point.index + 1}: workers {point.spec.workers} is more than "
                f"--cpus-per-task {limit}; raise --cpus-per-task or lower workers"
            )
    if not args.dry_run and shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found: SLURM is not installed here (--dry-run writes only)")
    sweep_dir = (args.out / sweep.name).resolve()
    states = sweep_states(sweep_dir, points) if sweep_dir.exists() else []
    done = {s.point.run_id for s in states if s.status in FINISHED and not args.force}
    pending = [p for p in points if p.run_id not in done]
    if not pending:
        print(f"sweep {sweep.name}: all {len(points)} runs are done; nothing to submit")
        return 0
    write_plan(sweep_dir, sweep.name, sweep.keys, points)
    slurm_dir = sweep_dir / "slurm"
    slurm_dir.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    for nodes, group in group_by_nodes(pending).items():
        suffix = "" if nodes == 1 else f"-nodes{nodes}"
        tasks_path = slurm_dir / f"tasks-{stamp}{suffix}.json"
        tasks = _chunks(group, settings.runs_per_task)
        frozen = {
            "sweep_dir": str(sweep_dir),
            "force": args.force,
            "nodes": nodes,
            "cpus_per_task": cpus[nodes],
            "mpi": settings.mpi,
            "tasks": [[p.to_json() for p in chunk] for chunk in tasks],
        }
        write_atomic(tasks_path, (json.dumps(frozen, indent=1) + "\n").encode())
        options = SbatchOptions(
            job_name=f"parsgd-{sweep.name}",
            tasks=len(tasks),
            runs=len(group),
            cpus_per_task=cpus[nodes],
            time=settings.time,
            log_dir=slurm_dir,
            workdir=Path.cwd(),
            command=(
                sys.executable,
                "-m",
                "parsgd",
                "sweep",
                str(args.sweep.resolve()),
                "--array-task",
                str(tasks_path),
            ),
            array_parallelism=settings.array_parallelism,
            mem=settings.mem,
            partition=settings.partition,
            signal_s=settings.signal_s,
            nodes=nodes,
            account=settings.account,
            qos=settings.qos,
            constraint=settings.constraint,
            extra=settings.sbatch,
            setup=settings.setup,
        )
        script = sweep_dir / script_name(nodes)
        write_atomic(script, make_sbatch_script(options).encode())
        shape = f"{nodes} nodes x {cpus[nodes]} CPUs" if nodes > 1 else f"{cpus[nodes]} CPUs"
        if args.dry_run:
            print(
                f"wrote {script} ({len(group)} runs in {len(tasks)} tasks of {shape}); "
                f"submit: sbatch {shlex.quote(str(script))}"
            )
            continue
        job_id = _sbatch(script, sweep_dir)
        _record_job(sweep_dir, job_id, tasks_path)
        print(
            f"submitted job array {job_id}: {len(group)} runs in {len(tasks)} tasks of {shape} "
            f"({shlex.quote(str(script))})"
        )
    if not args.dry_run:
        print(
            f"progress: parsgd sweep {shlex.quote(str(args.sweep))} "
            f"--out {shlex.quote(str(args.out))} --status"
        )
    return 0


def _sbatch(script: Path, cwd: Path) -> str:
    done = subprocess.run(
        ["sbatch", "--parsable", str(script)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise SlurmError(f"sbatch failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip().split(";")[0]


def _record_job(sweep_dir: Path, job_id: str, tasks_path: Path) -> None:
    path = sweep_dir / "slurm" / _JOBS_FILE
    with sweep_lock(sweep_dir):
        jobs = json.loads(path.read_text()) if path.exists() else []
        jobs.append({"job_id": job_id, "tasks": str(tasks_path), "submitted_at": time.time()})
        write_atomic(path, (json.dumps(jobs, indent=1) + "\n").encode())


def run_array_task(tasks_path: Path) -> int:
    """Inside an array task: run this task's points; requeue after a time-limit warning."""
    task_id = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    if not task_id.isdigit():
        raise ConfigError("--array-task needs SLURM_ARRAY_TASK_ID (it runs inside a job array)")
    frozen: dict[str, Any] = json.loads(tasks_path.read_text())
    if int(task_id) >= len(frozen["tasks"]):
        raise ConfigError(f"array task {task_id} is not in {tasks_path}")
    sweep_dir = Path(frozen["sweep_dir"])
    mine = [Point.from_json(p) for p in frozen["tasks"][int(task_id)]]
    keys, planned = read_plan(sweep_dir)
    # --force applies to the first attempt only: a requeued task resumes what it started.
    force = bool(frozen["force"]) and os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    if frozen.get("nodes", 1) > 1:
        task = MultiNodeTask(sweep_dir, keys, frozen, force)
        states, stopped_by = task.run(mine, planned), task.stopped_by
        unfinished = [s for s in states if s.status not in FINISHED]
        status = 130 if stopped_by else (1 if unfinished else 0)
    else:
        _warn_cpus(mine)
        local = LocalSweep(sweep_dir, keys, mine, jobs=1, force=force, label=f"task {task_id}")
        outcome = local.run(index_points=planned)
        states, stopped_by, status = outcome.states, outcome.stopped_by, outcome.exit_status
    for state in states:
        print(f"{state.status} {state.point.run_id}", flush=True)
    if stopped_by == "SIGUSR1":
        _requeue_self()
    return status


def _warn_cpus(mine: list[Point]) -> None:
    cpus = usable_cpus()
    for point in mine:
        if point.spec.workers != cpus:
            print(
                f"parsgd: warning: {point.run_id} has {point.spec.workers} workers "
                f"but SLURM gave this task {cpus} CPUs",
                file=sys.stderr,
            )


def _requeue_self() -> None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID", "")
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    target = f"{job}_{task}" if job and task else os.environ.get("SLURM_JOB_ID", "")
    if not target or shutil.which("scontrol") is None:
        return
    done = subprocess.run(["scontrol", "requeue", target], capture_output=True, text=True)
    state = "requeued" if done.returncode == 0 else f"requeue failed: {done.stderr.strip()}"
    print(f"parsgd: time limit near: runs checkpointed; {target} {state}", flush=True)


def queue_lines(sweep_dir: Path) -> list[str]:
    """What ``squeue`` says about the sweep's submitted arrays (nothing without SLURM)."""
    path = sweep_dir / "slurm" / _JOBS_FILE
    if not path.exists() or shutil.which("squeue") is None:
        return []
    ids = ",".join(job["job_id"] for job in json.loads(path.read_text()))
    done = subprocess.run(
        ["squeue", "-h", "-r", "-j", ids, "-o", "%i %T %M %R"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        return [f"squeue: {done.stderr.strip() or 'failed'}"]
    rows = [line for line in done.stdout.splitlines() if line.strip()]
    if not rows:
        return [f"squeue: no tasks of jobs {ids} queued or running"]
    counts: dict[str, int] = {}
    for row in rows:
        state = row.split()[1]
        counts[state] = counts.get(state, 0) + 1
    summary = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    return [f"squeue: {summary}", *(f"  {row}" for row in rows)]
