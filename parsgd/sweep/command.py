"""``parsgd sweep``: list, run locally, submit to SLURM, run an array task, show status.

Every action expands and validates all points first; a bad sweep file fails (exit 2) before
any file is written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from parsgd.errors import ConfigError

if TYPE_CHECKING:
    from parsgd.sweep.local import SweepOutcome
    from parsgd.sweep.spec import Point, Sweep
    from parsgd.sweep.state import RunState

# The heavy modules (numpy, the engine) are imported by the actions, not by
# ``add_sweep_arguments``: ``parsgd sweep --help`` stays as fast as ``parsgd --help``.

_STATUS_LINES = 20


def add_sweep_arguments(sweep: argparse.ArgumentParser) -> None:
    sweep.add_argument("sweep", type=Path, help="sweep YAML file")
    sweep.add_argument("--out", type=Path, default=Path("results"), help="results root")
    sweep.add_argument("--jobs", type=int, help="runs at once (default: cores / workers)")
    sweep.add_argument("--force", action="store_true", help="redo every run, even completed")
    sweep.add_argument("--list", action="store_true", help="print the expanded points only")
    sweep.add_argument("--status", action="store_true", help="summarise the sweep's runs")
    slurm = sweep.add_argument_group(
        "SLURM (with --slurm; each flag overrides the sweep file's slurm: key of the same name)"
    )
    slurm.add_argument("--slurm", action="store_true", help="submit as a SLURM job array")
    slurm.add_argument("--partition", help="sbatch --partition")
    slurm.add_argument("--account", help="sbatch --account")
    slurm.add_argument("--qos", help="sbatch --qos")
    slurm.add_argument("--constraint", help="sbatch --constraint (node features)")
    slurm.add_argument("--time", help="time limit per task (sbatch --time; default 01:00:00)")
    slurm.add_argument("--cpus-per-task", type=int, help="CPUs per task (default: the workers)")
    slurm.add_argument("--mem", help="memory per node, e.g. 4G (sbatch --mem)")
    slurm.add_argument("--array-parallelism", type=int, help="tasks running at once (%%K)")
    slurm.add_argument("--runs-per-task", type=int, help="runs per array task (default 1)")
    slurm.add_argument(
        "--signal-s",
        type=int,
        help="seconds before the time limit SLURM sends USR1 (checkpoint, requeue; default 60)",
    )
    slurm.add_argument(
        "--sbatch",
        action="append",
        metavar="--FLAG[=VALUE]",
        help="an extra sbatch flag, e.g. --sbatch=--exclusive (repeatable)",
    )
    slurm.add_argument(
        "--setup",
        action="append",
        metavar="LINE",
        help="a shell line run before parsgd in each task, e.g. 'module load mpi' (repeatable)",
    )
    slurm.add_argument(
        "--mpi", help="srun --mpi plugin for multi-node points (default pmi2; pmix for Open MPI)"
    )
    slurm.add_argument("--dry-run", action="store_true", help="write the sbatch script only")
    slurm.add_argument("--array-task", type=Path, help=argparse.SUPPRESS)


def sweep_command(args: argparse.Namespace) -> int:
    """Dispatch ``parsgd sweep``; raises ParsgdError for the CLI to report."""
    from parsgd.sweep.spec import expand_sweep, load_sweep
    from parsgd.sweep.state import PLAN_FILE, claim_sweep_dir

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be an integer >= 1; got {args.jobs}")
    if args.array_task is not None:
        from parsgd.sweep.slurm import run_array_task

        return run_array_task(args.array_task)
    sweep = load_sweep(args.sweep)
    sweep_dir = args.out / sweep.name
    if args.status:
        return print_status(sweep, sweep_dir)
    if args.list:  # with --slurm: the points as the tasks would run them
        print_points(sweep, expand_sweep(sweep, workers=args.cpus_per_task))
        return 0
    owned = args.out.resolve() / sweep.name
    if sweep.source is not None:
        claim_sweep_dir(owned, sweep.source, record_it=False)  # before anything is written
    if args.slurm:
        from parsgd.sweep.slurm import submit_sweep

        status = submit_sweep(sweep, args)
        if sweep.source is not None and (owned / PLAN_FILE).exists():
            claim_sweep_dir(owned, sweep.source)
        return status
    points = expand_sweep(sweep, workers=None)
    if sweep.source is not None:
        claim_sweep_dir(owned, sweep.source)
    return run_locally(sweep, points, sweep_dir, args.jobs, args.force)


def print_points(sweep: Sweep, points: list[Point]) -> None:
    from parsgd.sweep.spec import describe_values

    width = max(len(p.run_id) for p in points)
    print(f"# sweep {sweep.name}: {len(points)} points over {', '.join(sweep.keys)}")
    for point in points:
        print(f"{point.run_id:<{width}}  {describe_values(point.values)}")


def run_locally(
    sweep: Sweep, points: list[Point], sweep_dir: Path, jobs: int | None, force: bool
) -> int:
    from parsgd.sweep.local import LocalSweep
    from parsgd.sweep.state import INDEX_FILE, write_plan

    write_plan(sweep_dir, sweep.name, sweep.keys, points)
    tic = time.perf_counter()
    outcome = LocalSweep(sweep_dir, sweep.keys, points, jobs, force, sweep.name).run()
    print(_summary_line(sweep, outcome, time.perf_counter() - tic))
    print(f"index: {sweep_dir / INDEX_FILE}")
    if outcome.stopped_by:
        print(f"stopped by {outcome.stopped_by}; run the same command again to finish")
    return outcome.exit_status


def _summary_line(sweep: Sweep, outcome: SweepOutcome, wall_s: float) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts().items()))
    line = (
        f"sweep {sweep.name}: {len(outcome.states)} points: {counts}; "
        f"ran {outcome.ran}, skipped {outcome.skipped} already done"
    )
    if outcome.busy:
        line += f", {outcome.busy} left to another process running them"
    line += f"; {wall_s:.1f} s"
    if outcome.overhead_s:
        mean_ms = 1000 * sum(outcome.overhead_s) / len(outcome.overhead_s)
        line += f"; sweep overhead {mean_ms:.0f} ms per run"
    return line


def load_points(sweep: Sweep, sweep_dir: Path) -> tuple[list[str], list[Point]]:
    """The points as last planned in ``sweep_dir`` (sweep.json), else as expanded here."""
    from parsgd.config.load import usable_cpus
    from parsgd.sweep.spec import expand_sweep
    from parsgd.sweep.state import PLAN_FILE, read_plan

    if (sweep_dir / PLAN_FILE).exists():
        return read_plan(sweep_dir)
    return sweep.keys, expand_sweep(sweep, workers=usable_cpus())


def print_status(sweep: Sweep, sweep_dir: Path) -> int:
    from parsgd.sweep.state import INDEX_FILE, PLAN_FILE, sweep_states

    if not (sweep_dir / PLAN_FILE).exists():
        print(f"sweep {sweep.name}: no results found at {sweep_dir} (ran elsewhere? give --out)")
        return 1

    _, points = load_points(sweep, sweep_dir)
    states = sweep_states(sweep_dir, points)
    counts: dict[str, int] = {}
    for state in states:
        counts[state.status] = counts.get(state.status, 0) + 1
    done = sum(counts.get(s, 0) for s in ("completed", "diverged"))
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    print(f"sweep {sweep.name}: {done}/{len(states)} done ({summary})")
    unfinished = [state for state in states if state.status != "completed"]
    for state in unfinished[:_STATUS_LINES]:
        print(f"  {state.status:<11} {state.point.run_id}  {_reason(state)}")
    if len(unfinished) > _STATUS_LINES:
        print(f"  ... and {len(unfinished) - _STATUS_LINES} more (see index.csv)")
    if (sweep_dir / INDEX_FILE).exists():
        print(f"index: {sweep_dir / INDEX_FILE}")
    from parsgd.sweep.slurm import queue_lines

    for line in queue_lines(sweep_dir):
        print(line)
    sys.stdout.flush()
    return 0 if done == len(states) else 1


def _reason(state: RunState) -> str:
    from parsgd.sweep.spec import describe_values

    reason = str(state.record.get("reason", ""))
    return describe_values(state.point.values) + (f": {reason}" if reason else "")
