"""``run_experiment``: one run from its spec to a finished results directory.

Order matters: everything that can be wrong with the input (config, output directory, data)
is found before the results directory is touched or a process started; from the moment the
directory is claimed, every exit path leaves a final ``run.json`` and frees shared memory.
"""

from __future__ import annotations

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
from parsgd.config.files import dump_config
from parsgd.config.load import usable_cpus
from parsgd.config.spec import Config, RunSpec
from parsgd.data.partition import Partition, make_partition
from parsgd.data.shared import LocalArena, SharedArena, remove_stale_segments
from parsgd.engine import backends
from parsgd.engine.barrier import spin_budget
from parsgd.engine.collector import Collector
from parsgd.engine.control import SPIN_NS
from parsgd.engine.logs import RunLog
from parsgd.engine.loop import Outcome, Position
from parsgd.engine.meetings import MOMENTUM_MODES
from parsgd.engine.plan import Plan
from parsgd.engine.resume import Start, find_start
from parsgd.engine.rundir import RunDirectory, TraceWriter, check_writable
from parsgd.engine.signals import StopSignals, signals_ignored
from parsgd.engine.team import Settings, Team, TeamState
from parsgd.engine.warmup import warm_up
from parsgd.errors import ConfigError, ParsgdError, WorkerError
from parsgd.numba_start import start_numba
from parsgd.problems.base import Problem
from parsgd.problems.registry import build_problem
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


def run_experiment(
    spec: RunSpec | Config, out: Path, resume: bool = False, force: bool = False
) -> RunResult:
    """Run one experiment (all its trials) and write ``<out>/<name>/``.

    ``spec`` comes from ``load_config``; a resolved config mapping
    (``resolve(validate(raw))``) is taken too and made a spec here.

    Results already in ``<out>/<name>/`` are never destroyed unless asked: ``resume``
    continues the same config from its checkpoint, ``force`` replaces whatever is there,
    and without either a directory holding a run is refused (``engine.resume.find_start``).
    """
    if not isinstance(spec, RunSpec):
        spec = RunSpec.from_resolved(spec)
    backend = backends.info(spec.backend)
    if backend.across_nodes:  # one line, exit 2, before anything starts
        across: Any = backends.load(backend.name)
        across.check_setup(spec.nodes)
    run_dir = RunDirectory(Path(out) / spec.name)
    check_writable(run_dir.root)
    begin = find_start(run_dir, spec.config_hash, resume, force)
    if begin.done is not None:
        return RunResult("completed", run_dir.root, begin.done)
    stale = remove_stale_segments()  # logged once log.txt exists

    # Stop signals are ours from here to the end, so that none finds Python's default
    # handler in between (before the run: abort the start-up; after: nothing to stop).
    with StopSignals() as signals:
        return _run_with_signals(spec, run_dir, begin, stale, signals)


def _run_with_signals(
    spec: RunSpec,
    run_dir: RunDirectory,
    begin: Start,
    stale: list[str],
    signals: StopSignals,
) -> RunResult:
    start, W0 = begin.position, begin.W
    M = spec.ranks
    backend = backends.info(spec.backend)
    arena = SharedArena() if backend.shared_memory else LocalArena()
    try:
        # numba's registries, before the first kernel compiles or loads (numba_start.py);
        # not earlier, so a run refused above (results there, bad set-up) never pays them.
        start_numba()
        problem = build_problem(spec, arena)  # DataError here: nothing written yet
        partition = _partition(spec, problem, M, arena)
        plan = Plan.from_spec(spec)
        shared_model = spec.method == "hogwild"
        momentum = spec.sgd.momentum
        state = TeamState(
            arena, M, problem.d, shared_model, momentum > 0.0, flag_column=backend.across_nodes
        )
        if W0 is not None and W0.shape != state.W.shape[1:]:
            raise ConfigError(
                f"{run_dir.checkpoint_path} holds models of shape {W0.shape}, this run "
                f"needs {state.W.shape[1:]}; rerun with --force to start over"
            )
        settings = Settings(
            workers=M,
            trials=spec.trials,
            seed=spec.seed,
            batch_size=spec.sgd.batch_size,
            init=spec.sgd.init,
            init_scale=spec.sgd.init_scale,
            step_size=spec.sgd.step_size,
            shared_model=shared_model,
            nodes=spec.nodes,
            shuffle=spec.sgd.sampling == "shuffle",
            momentum=momentum,
            nesterov=spec.sgd.nesterov,
            momentum_mode=MOMENTUM_MODES[spec.averaging.momentum],
        )
        ranks_here = M // spec.nodes if backend.across_nodes else M
        state.control[SPIN_NS] = spin_budget(ranks_here, usable_cpus())
        team = Team(problem, plan, state, settings, partition)
        warm_up(team)  # here, before the workers fork, not inside a trial's clock
        if W0 is not None:
            team.load_models(start.trial, start.step, W0)
        if backend.across_nodes:
            across: Any = backends.load(backend.name)
            # Forks this node's workers, then MPI_Init. Rank 0 writes the results; the others
            # only run their node.
            joined = across.join(team, start)
            # The node's workers have every mapping: nothing opens a segment by name any
            # more, so none is left behind if the launcher kills this rank.
            arena.unlink_names()
            if not joined:
                signals.control = state.control
                return RunResult(across.follow(team, start), run_dir.root)
        run_dir.claim(fresh=start.step < 0)
        signals.control = state.control
        try:
            return _run_claimed(spec, run_dir, team, begin, stale, signals)
        finally:
            run_dir.release()
    finally:
        with signals_ignored():
            arena.close()


def _partition(spec: RunSpec, problem: Problem, workers: int, arena: Any) -> Partition:
    """The rows each of the ``workers`` ranks samples (data.partition), before any fork."""
    kind, alpha = spec.data.partition
    labels = problem.class_labels() if kind == "dirichlet" else None
    return make_partition(kind, alpha, problem.n, labels, workers, spec.seed, arena)


def _run_claimed(
    spec: RunSpec,
    run_dir: RunDirectory,
    team: Team,
    begin: Start,
    stale: list[str],
    signals: StopSignals,
    link: Any = None,
) -> RunResult:
    start, keep_rows = begin.position, begin.keep_rows
    run_dir.write_text(run_dir.config_path, dump_config(spec.to_dict()))
    record: dict[str, Any] = {
        "status": "running",
        "reason": "",
        "name": spec.name,
        "host": socket.gethostname(),
        "coordinator_pid": os.getpid(),
        "pids": [],
        "backend": spec.backend,
        "workers": spec.workers,
        "nodes": spec.nodes,
        "seed": spec.seed,
        "config_hash": spec.config_hash,
        "versions": _versions(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "resumed_from": None if start.step < 0 else {"trial": start.trial, "step": start.step},
    }
    record.update(_slurm_ids())
    run_dir.write_json(record)
    trace = TraceWriter(run_dir.trace_path, keep_rows)
    collector = Collector(run_dir, trace, team.plan, spec)

    runner: Any = None

    def started(pids: list[int]) -> None:
        record["pids"] = pids
        record.update(getattr(runner, "record", {}))  # e.g. every node's host, rank, pids
        run_dir.write_json(record)

    collector.on_started = started
    backend = backends.info(spec.backend)
    run_log = RunLog(run_dir.log_path, multiprocess=backend.process_per_worker)
    tic = time.perf_counter()
    outcome: Outcome | None = None
    timings: list[dict[str, float]] = []
    try:
        for name in stale:
            log.info("removed stale shared-memory segment %s", name)
        for name in run_dir.removed:
            log.info("removed %s, left by a run that was killed", name)
        for note in begin.notes:
            log.info(note)
        for note in advisories(spec):
            log.warning(note)
        log.info(
            "run %s: %d workers, backend %s, config hash %s",
            spec.name,
            spec.workers,
            spec.backend,
            spec.config_hash,
        )
        collector.signals = signals
        collector.control = team.state.control
        runner = backends.load(backend.name)
        outcome, timings = runner.run(team, start, collector)
        record["status"] = outcome.status
        if collector.nonfinite is not None:
            trial, step, column = collector.nonfinite
            record["status"] = "diverged"
            record["reason"] = (
                f"non-finite {column} at trial {trial} step {step}; try a smaller sgd.step_size"
            )
        elif outcome.status == "interrupted":
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
        signals.settled = True  # first: see StopSignals.settled
        with signals_ignored():
            collector.progress.close()
            trace.close()
            total_s = time.perf_counter() - tic
            record.update(getattr(runner, "record", {}))
            record.update(_summary(spec, team, start, outcome, timings, total_s, collector))
            record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            run_dir.free_reserve()
            run_dir.write_json(record)
            run_log.close()
    return RunResult(record["status"], run_dir.root, record["reason"])


def _summary(
    spec: RunSpec,
    team: Team,
    start: Position,
    outcome: Outcome | None,
    timings: list[dict[str, float]],
    total_s: float,
    collector: Collector,
) -> dict[str, Any]:
    def mean(key: str) -> float:
        return float(np.mean([t[key] for t in timings])) if timings else 0.0

    steps = team.plan.total_steps
    done = 0
    if outcome is not None:
        done = outcome.trial * steps + outcome.step - (start.trial * steps + max(start.step, 0))
    samples = done * team.settings.workers * spec.sgd.batch_size
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
