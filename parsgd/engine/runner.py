"""``run_experiment``: one run from a resolved config to a finished results directory.

Order matters: everything that can be wrong with the input (config, output directory, data)
is found before the results directory is touched or a process started; from the moment the
directory is claimed, every exit path leaves a final ``run.json`` and frees shared memory.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parsgd.config.advice import advisories
from parsgd.config.load import Config, config_hash, dump_config
from parsgd.data.shared import LocalArena, SharedArena, remove_stale_segments
from parsgd.engine.coordinator import Coordinator, Sink
from parsgd.engine.logs import RunLog
from parsgd.engine.loop import Outcome, Position
from parsgd.engine.plan import Plan
from parsgd.engine.progress import ProgressBar
from parsgd.engine.rundir import RunDirectory, TraceWriter, check_writable, read_trace
from parsgd.engine.serial import run_serial
from parsgd.engine.signals import StopSignals, signals_ignored
from parsgd.engine.team import Settings, Team, TeamState
from parsgd.engine.warmup import warm_up
from parsgd.errors import ConfigError, ParsgdError, WorkerError
from parsgd.problems.registry import build_problem
from parsgd.schedules import StepSize
from parsgd.version import __version__

log = logging.getLogger("parsgd")

EXIT_STATUS = {"completed": 0, "failed": 1, "diverged": 3, "interrupted": 130}
_FINAL_COLUMNS = ("loss", "loss_workers_mean", "variance", "dist_opt_sq", "subopt")


@dataclass(frozen=True)
class RunResult:
    status: str
    directory: Path
    reason: str = ""

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.status]


class _Collector(Sink):
    """Receives rank 0's rows and checkpoints; keeps the last row of every trial."""

    def __init__(self, run_dir: RunDirectory, trace: TraceWriter, plan: Plan, config: Config):
        self.run_dir, self.trace, self.plan = run_dir, trace, plan
        self.config_hash = config_hash(config)
        # The last row of every trial, for run.json's final figures; a resumed run starts
        # from the rows it kept.
        self.last_rows: dict[int, dict[str, Any]] = (
            {int(row["trial"]): _parse_row(row) for row in read_trace(run_dir.trace_path)}
            if trace.rows
            else {}
        )
        self.pids: list[int] = []
        self.progress = ProgressBar(config["trials"] * plan.total_steps, config["name"])
        self.on_started: Any = None
        self.signals: StopSignals | None = None

    def _critical(self) -> contextlib.AbstractContextManager[None]:
        return self.signals.critical() if self.signals is not None else contextlib.nullcontext()

    def started(self, pids: list[int]) -> None:
        self.pids = pids
        if self.on_started is not None:
            self.on_started(pids)

    def row(self, row: dict[str, Any]) -> None:
        with self._critical():
            self.trace.append(row)
        self.last_rows[row["trial"]] = row
        self.progress.update(row["trial"] * self.plan.total_steps + row["step"])

    def checkpoint(self, trial: int, step: int, wall_s: float, W: np.ndarray) -> None:
        meta = {
            "trial": trial,
            "step": step,
            "wall_s": wall_s,
            "trace_rows": self.trace.rows,
            "config_hash": self.config_hash,
        }
        with self._critical():
            self.run_dir.write_checkpoint(W, meta)
        log.info("checkpoint at trial %d step %d", trial, step)


def _versions() -> dict[str, str]:
    import numba

    return {
        "parsgd": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def _slurm_ids() -> dict[str, str]:
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
    return {k.lower(): os.environ[k] for k in keys if k in os.environ}


def _load_position(run_dir: RunDirectory, digest: str) -> tuple[Position, int, np.ndarray] | None:
    """Where ``--resume`` continues from, or None if there is no checkpoint."""
    if not run_dir.checkpoint_path.exists():
        return None
    W, meta = run_dir.read_checkpoint()
    if meta["config_hash"] != digest:
        raise ConfigError(
            f"{run_dir.checkpoint_path} was written by a different config "
            f"(hash {meta['config_hash']}, this one {digest}); rerun without --resume"
        )
    return Position(meta["trial"], meta["step"], meta["wall_s"]), meta["trace_rows"], W


def run_experiment(config: Config, out: Path, resume: bool = False) -> RunResult:
    """Run one experiment (all its trials) and write ``<out>/<name>/``."""
    if config["backend"] == "mpi":  # one line, exit 2, before anything starts
        from parsgd.engine.backends.mpi_setup import check_mpi_setup

        check_mpi_setup(config["nodes"])
    run_dir = RunDirectory(Path(out) / config["name"])
    check_writable(run_dir.root)
    digest = config_hash(config)
    start, keep_rows, W0 = Position(), None, None
    if resume:
        loaded = _load_position(run_dir, digest)
        if loaded is None and run_dir.status_path.exists():
            previous = run_dir.read_json()
            if previous.get("status") == "completed" and previous.get("config_hash") == digest:
                return RunResult("completed", run_dir.root, "already completed")
        if loaded is not None:
            start, keep_rows, W0 = loaded
        else:
            print(
                f"parsgd: no checkpoint in {run_dir.root}: starting from the beginning",
                file=sys.stderr,
            )
    stale = remove_stale_segments()  # logged once log.txt exists

    # Stop signals are ours from here to the end, so that none finds Python's default
    # handler in between (before the run: abort the start-up; after: nothing to stop).
    with StopSignals() as signals:
        return _run_with_signals(config, run_dir, start, keep_rows, W0, digest, stale, signals)


def _run_with_signals(
    config: Config,
    run_dir: RunDirectory,
    start: Position,
    keep_rows: int | None,
    W0: np.ndarray | None,
    digest: str,
    stale: list[str],
    signals: StopSignals,
) -> RunResult:
    M = config["workers"] * config["nodes"]
    arena = SharedArena() if config["backend"] == "processes" else LocalArena()
    try:
        problem = build_problem(config, arena)  # DataError here: nothing written yet
        plan = Plan.from_config(config)
        shared_model = config["method"] == "hogwild"
        state = TeamState(arena, M, problem.d, shared_model)
        settings = Settings(
            workers=M,
            trials=config["trials"],
            seed=config["seed"],
            batch_size=config["sgd"]["batch_size"],
            init=config["sgd"]["init"],
            init_scale=config["sgd"]["init_scale"],
            step_size=StepSize.from_config(config),
            shared_model=shared_model,
            nodes=config["nodes"],
        )
        team = Team(problem, plan, state, settings)
        warm_up(team)  # here, before the workers fork, not inside a trial's clock
        if W0 is not None:
            team.load_models(start.trial, start.step, W0)
        link = None
        if config["backend"] == "mpi":
            from parsgd.engine.backends.mpi_loop import follow, join_nodes

            link = join_nodes()
            if link.rank != 0:  # rank 0 writes the results; the others only run their node
                signals.control = state.control
                return RunResult(follow(team, start, link), run_dir.root)
        run_dir.claim(fresh=start.step < 0)
        signals.control = state.control
        try:
            return _run_claimed(
                config, run_dir, team, start, keep_rows, digest, stale, signals, link
            )
        finally:
            run_dir.release()
    finally:
        with signals_ignored():
            arena.close()


def _run_claimed(
    config: Config,
    run_dir: RunDirectory,
    team: Team,
    start: Position,
    keep_rows: int | None,
    digest: str,
    stale: list[str],
    signals: StopSignals,
    link: Any = None,
) -> RunResult:
    run_dir.config_path.write_text(dump_config(config))
    record: dict[str, Any] = {
        "status": "running",
        "reason": "",
        "name": config["name"],
        "host": socket.gethostname(),
        "coordinator_pid": os.getpid(),
        "pids": [],
        "backend": config["backend"],
        "workers": config["workers"],
        "nodes": config["nodes"],
        "seed": config["seed"],
        "config_hash": digest,
        "versions": _versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from": None if start.step < 0 else {"trial": start.trial, "step": start.step},
    }
    record.update(_slurm_ids())
    run_dir.write_json(record)
    trace = TraceWriter(run_dir.trace_path, keep_rows)
    collector = _Collector(run_dir, trace, team.plan, config)

    def started(pids: list[int]) -> None:
        record["pids"] = pids
        run_dir.write_json(record)

    collector.on_started = started
    run_log = RunLog(run_dir.log_path, multiprocess=config["backend"] == "processes")
    tic = time.perf_counter()
    outcome: Outcome | None = None
    timings: list[dict[str, float]] = []
    try:
        for name in stale:
            log.info("removed stale shared-memory segment %s", name)
        for note in advisories(config):
            log.warning(note)
        log.info(
            "run %s: %d workers, backend %s, config hash %s",
            config["name"],
            config["workers"],
            config["backend"],
            digest,
        )
        collector.signals = signals
        if config["backend"] == "processes":
            outcome, timings = Coordinator(team, start, collector).run()
        elif link is not None:
            from parsgd.engine.backends.mpi_loop import lead

            outcome, timings, record["mpi_ranks"] = lead(team, start, collector, link)
        else:
            outcome, timings = run_serial(team, start, collector)
        record["status"] = outcome.status
        if outcome.status == "interrupted":
            models = team.models_after(outcome.trial, outcome.step)
            collector.checkpoint(outcome.trial, outcome.step, outcome.wall_s, models)
            record["reason"] = (
                f"{signals.received or 'a stop request on another node'} at trial "
                f"{outcome.trial} step {outcome.step}; "
                "checkpoint written, continue with --resume"
            )
        elif outcome.status == "diverged":
            record["reason"] = (
                f"non-finite model or loss at trial {outcome.trial} step {outcome.step}; "
                "try a smaller sgd.step_size"
            )
        else:
            run_dir.checkpoint_path.unlink(missing_ok=True)
    except KeyboardInterrupt as exc:
        record["status"], record["reason"] = "interrupted", f"stopped at once by a {exc}"
    except Exception as exc:  # the run failed: record why, with the worker's traceback
        record["status"] = "failed"
        record["reason"] = str(exc) if isinstance(exc, ParsgdError) else repr(exc)
        remote = exc.remote_traceback if isinstance(exc, WorkerError) else ""
        record["traceback"] = remote or traceback.format_exc()
        log.error("run failed: %s", record["reason"])
        if remote:
            sys.stderr.write(remote)
    finally:
        with signals_ignored():
            collector.progress.close()
            trace.close()
            total_s = time.perf_counter() - tic
            record.update(_summary(config, team, start, outcome, timings, total_s, collector))
            record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            run_dir.free_reserve()
            run_dir.write_json(record)
            run_log.close()
    return RunResult(record["status"], run_dir.root, record["reason"])


def _parse_row(row: dict[str, str]) -> dict[str, Any]:
    """A trace.csv row read back: integers, floats, and None for empty cells."""
    parsed: dict[str, Any] = {}
    for key, text in row.items():
        if key in ("trial", "step", "samples", "syncs"):
            parsed[key] = int(text)
        else:
            parsed[key] = float(text) if text else None
    return parsed


def _summary(
    config: Config,
    team: Team,
    start: Position,
    outcome: Outcome | None,
    timings: list[dict[str, float]],
    total_s: float,
    collector: _Collector,
) -> dict[str, Any]:
    def mean(key: str) -> float:
        return float(np.mean([t[key] for t in timings])) if timings else 0.0

    steps = team.plan.total_steps
    done = 0
    if outcome is not None:
        done = outcome.trial * steps + outcome.step - (start.trial * steps + max(start.step, 0))
    samples = done * team.settings.workers * config["sgd"]["batch_size"]
    compute_s = mean("compute_s")
    finals = list(collector.last_rows.values())
    final: dict[str, float | str | None] = {}
    for key in _FINAL_COLUMNS:
        values = [row[key] for row in finals if row[key] is not None]
        value = float(np.mean(values)) if values else None
        # JSON has no NaN or inf: a diverged run records them as text.
        final[key] = str(value) if value is not None and not math.isfinite(value) else value
    return {
        "timings": {
            "compute_s": compute_s,
            "sync_s": mean("sync_s"),
            "eval_s": mean("eval_s"),
            "total_s": total_s,
        },
        "samples": samples,
        "updates_per_s": samples / compute_s if compute_s > 0 else None,
        "trials_completed": len([r for r in finals if r["step"] == steps]),
        "final_mean_over_trials": final,
    }
