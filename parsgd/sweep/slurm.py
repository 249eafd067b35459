"""A sweep as a SLURM job array: the sbatch script (a pure function), submission, array tasks.

    submit host: expand + validate every point (``workers: auto`` = --cpus-per-task), write
                 sweep.json, slurm/tasks-<stamp>.json (the runs of each array task, frozen),
                 sweep.sbatch; ``sbatch --parsable sweep.sbatch``; record the job id
    array task:  ``python -m parsgd sweep ... --array-task tasks.json`` picks its runs by
                 SLURM_ARRAY_TASK_ID and runs them as a local sweep would (resuming, skipping
                 completed ones), then rewrites index.csv under the sweep's lock

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsgd.config.load import usable_cpus
from parsgd.engine.rundir import write_atomic
from parsgd.errors import ConfigError, ParsgdError
from parsgd.sweep.local import LocalSweep
from parsgd.sweep.spec import Point, Sweep, expand_sweep
from parsgd.sweep.state import FINISHED, read_plan, sweep_lock, sweep_states, write_plan

SCRIPT_FILE = "sweep.sbatch"
_JOBS_FILE = "jobs.json"


class SlurmError(ParsgdError):
    """sbatch or scontrol failed (its message attached)."""


@dataclass(frozen=True)
class SbatchOptions:
    """Everything the sbatch script says; paths absolute."""

    job_name: str
    tasks: int
    runs: int
    cpus_per_task: int
    time: str
    log_dir: Path
    workdir: Path
    command: tuple[str, ...]
    array_parallelism: int | None = None
    mem: str | None = None
    partition: str | None = None
    signal_s: int = 60


def make_sbatch_script(options: SbatchOptions) -> str:
    """The text of the job-array batch script (pure: same options, same bytes)."""
    array = f"0-{options.tasks - 1}"
    if options.array_parallelism is not None:
        array += f"%{options.array_parallelism}"
    lines = [
        "#!/bin/bash",
        f"# parsgd sweep: {options.runs} runs in {options.tasks} array tasks.",
        "# Written by `parsgd sweep --slurm`; submitting the sweep again skips completed runs.",
        f"#SBATCH --job-name={options.job_name}",
        f"#SBATCH --array={array}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --time={options.time}",
    ]
    if options.mem is not None:
        lines.append(f"#SBATCH --mem={options.mem}")
    if options.partition is not None:
        lines.append(f"#SBATCH --partition={options.partition}")
    lines += [
        f"#SBATCH --output={options.log_dir}/%A_%a.out",
        "#SBATCH --open-mode=append",
        f"#SBATCH --signal=B:USR1@{options.signal_s}",
        "#SBATCH --requeue",
        "",
        f"cd {shlex.quote(str(options.workdir))}",
        "exec " + " ".join(shlex.quote(part) for part in options.command),
        "",
    ]
    return "\n".join(lines)


def _chunks(points: list[Point], size: int) -> list[list[Point]]:
    return [points[i : i + size] for i in range(0, len(points), size)]


def submit_sweep(sweep: Sweep, args: argparse.Namespace) -> int:
    """Expand, write the task files and the script, and (unless --dry-run) sbatch it."""
    if args.runs_per_task < 1:
        raise ConfigError(f"--runs-per-task must be an integer >= 1; got {args.runs_per_task}")
    for flag in ("cpus_per_task", "array_parallelism"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be an integer >= 1; got {value}")
    points = expand_sweep(sweep, workers=args.cpus_per_task or usable_cpus())
    cpus = args.cpus_per_task or max(p.config["workers"] for p in points)
    for point in points:
        if point.config["workers"] > cpus:
            raise ConfigError(
                f"sweep point {point.index + 1}: workers {point.config['workers']} is more than "
                f"--cpus-per-task {cpus}; raise --cpus-per-task or lower workers"
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
    tasks_path = slurm_dir / f"tasks-{stamp}.json"
    tasks = _chunks(pending, args.runs_per_task)
    frozen = {
        "sweep_dir": str(sweep_dir),
        "force": args.force,
        "tasks": [[p.to_json() for p in chunk] for chunk in tasks],
    }
    write_atomic(tasks_path, (json.dumps(frozen, indent=1) + "\n").encode())
    options = SbatchOptions(
        job_name=f"parsgd-{sweep.name}",
        tasks=len(tasks),
        runs=len(pending),
        cpus_per_task=cpus,
        time=args.time,
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
        array_parallelism=args.array_parallelism,
        mem=args.mem,
        partition=args.partition,
        signal_s=args.signal_s,
    )
    script = sweep_dir / SCRIPT_FILE
    write_atomic(script, make_sbatch_script(options).encode())
    if args.dry_run:
        print(
            f"wrote {script} ({len(pending)} runs in {len(tasks)} tasks); submit: sbatch {script}"
        )
        return 0
    job_id = _sbatch(script, sweep_dir)
    _record_job(sweep_dir, job_id, tasks_path)
    print(f"submitted job array {job_id}: {len(pending)} runs in {len(tasks)} tasks ({script})")
    print(f"progress: parsgd sweep {args.sweep} --out {args.out} --status")
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
    cpus = usable_cpus()
    for point in mine:
        if point.config["workers"] != cpus:
            print(
                f"parsgd: warning: {point.run_id} has {point.config['workers']} workers "
                f"but SLURM gave this task {cpus} CPUs",
                file=sys.stderr,
            )
    keys, planned = read_plan(sweep_dir)
    # --force applies to the first attempt only: a requeued task resumes what it started.
    force = bool(frozen["force"]) and os.environ.get("SLURM_RESTART_COUNT", "0") == "0"
    local = LocalSweep(sweep_dir, keys, mine, jobs=1, force=force, label=f"task {task_id}")
    outcome = local.run(index_points=planned)
    for state in outcome.states:
        print(f"{state.status} {state.point.run_id}", flush=True)
    if outcome.stopped_by == "SIGUSR1":
        _requeue_self()
    return outcome.exit_status


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
