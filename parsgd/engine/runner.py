"""``run_experiment``: one run from a resolved config to a finished results directory.

Order matters: everything that can be wrong with the input (config, output directory, data)
is found before the results directory is touched or a process started; from the moment the
directory is claimed, every exit path leaves a final ``run.json`` and frees shared memory.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

import parsgd
from parsgd.advice import advisories
from parsgd.config import Config, config_hash, dump_config
from parsgd.data.shared import LocalArena, SharedArena, remove_stale_segments
from parsgd.engine.collector import RunDirectory, TraceWriter, check_writable, read_trace
from parsgd.engine.coordinator import Coordinator, Sink
from parsgd.engine.logs import RunLog
from parsgd.engine.plan import Plan
from parsgd.engine.serial import run_serial
from parsgd.engine.team import STOP_REQUEST, Outcome, Position, Settings, Team, TeamState
from parsgd.errors import ConfigError, ParsgdError, WorkerError
from parsgd.problem import Problem, build_problem
from parsgd.progress import ProgressBar
from parsgd.schedules import StepSize

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
        self.last_rows: dict[int, dict[str, Any]] = {}
        self.pids: list[int] = []
        self.progress = ProgressBar(config["trials"] * plan.total_steps, config["name"])
        self.on_started: Any = None

    def started(self, pids: list[int]) -> None:
        self.pids = pids
        if self.on_started is not None:
            self.on_started(pids)

    def row(self, row: dict[str, Any]) -> None:
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
        self.run_dir.write_checkpoint(W, meta)
        log.info("checkpoint at trial %d step %d", trial, step)


class _StopSignals:
    """First SIGINT/SIGTERM/SIGUSR1: stop at the next meeting. Second: stop now.

    SIGUSR1 is what ``sbatch --signal=B:USR1@60`` sends ahead of a time limit. A signal the
    process was started with ignored (``nohup``, a sweep's run process) stays ignored, as
    Python itself leaves SIGINT alone when it starts ignored.
    """

    def __init__(self, control: np.ndarray) -> None:
        self.control = control
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
            self.control[STOP_REQUEST] = 1
            log.warning("%s: stopping at the next meeting (send it again to stop now)", name)
            return
        raise KeyboardInterrupt(f"second signal ({name})")


def _versions() -> dict[str, str]:
    import numba

    return {
        "parsgd": parsgd.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def _slurm_ids() -> dict[str, str]:
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID")
    return {k.lower(): os.environ[k] for k in keys if k in os.environ}


def _warm_up(problem: Problem) -> None:
    """Compile the kernels before forking, so that workers inherit them instead of compiling."""
    w = np.zeros(problem.d)
    problem.sgd(w, np.full((1, problem.uniforms_per_step), 0.5), np.zeros(1))
    problem.loss_partial(w, 0, 1)


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
    for name in remove_stale_segments():
        log.info("removed stale shared-memory segment %s", name)

    M = config["workers"]
    arena = SharedArena() if config["backend"] == "processes" else LocalArena()
    try:
        problem = build_problem(config, arena)  # DataError here: nothing written yet
        _warm_up(problem)
        plan = Plan.from_config(config)
        state = TeamState(arena, M, problem.d)
        if W0 is not None:
            state.W[:] = W0
        settings = Settings(
            workers=M,
            trials=config["trials"],
            seed=config["seed"],
            batch_size=config["sgd"]["batch_size"],
            init=config["sgd"]["init"],
            init_scale=config["sgd"]["init_scale"],
            step_size=StepSize.from_config(config),
        )
        team = Team(problem, plan, state, settings)
        run_dir.claim(fresh=start.step < 0)
        try:
            return _run_claimed(config, run_dir, team, start, keep_rows, digest)
        finally:
            run_dir.release()
    finally:
        arena.close()


def _run_claimed(
    config: Config,
    run_dir: RunDirectory,
    team: Team,
    start: Position,
    keep_rows: int | None,
    digest: str,
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
    if keep_rows:  # resumed: trials finished before the checkpoint count in the final figures
        for kept in read_trace(run_dir.trace_path):
            collector.last_rows[int(kept["trial"])] = _parse_row(kept)

    def started(pids: list[int]) -> None:
        record["pids"] = pids
        run_dir.write_json(record)

    collector.on_started = started
    run_log = RunLog(run_dir.log_path, multiprocess=config["backend"] == "processes")
    tic = time.perf_counter()
    outcome: Outcome | None = None
    timings: list[dict[str, float]] = []
    try:
        for note in advisories(config):
            log.warning(note)
        log.info(
            "run %s: %d workers, backend %s, config hash %s",
            config["name"],
            config["workers"],
            config["backend"],
            digest,
        )
        with _StopSignals(team.state.control) as signals:
            if config["backend"] == "processes":
                outcome, timings = Coordinator(team, start, collector).run()
            else:
                outcome, timings = run_serial(team, start, collector)
        record["status"] = outcome.status
        if outcome.status == "interrupted":
            collector.checkpoint(outcome.trial, outcome.step, outcome.wall_s, team.state.W.copy())
            record["reason"] = (
                f"{signals.received} at trial {outcome.trial} step {outcome.step}; "
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
        collector.progress.close()
        trace.close()
        total_s = time.perf_counter() - tic
        record.update(_summary(config, team, start, outcome, timings, total_s, collector))
        record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
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
    samples = done * config["workers"] * config["sgd"]["batch_size"]
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
