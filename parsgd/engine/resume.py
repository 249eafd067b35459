"""Where a run starts, given what its results directory already holds: nothing is lost.

    nothing there                      -> a fresh run
    --force                            -> a fresh run over whatever is there
    --resume, a checkpoint             -> continue it (same config only)
    --resume, completed, same config   -> nothing to do
    --resume, different config         -> refused: the old results stay
    no flag, a run there               -> refused, unless it is completed with this config

All of it is decided before the directory is locked or a process started, so a refusal
writes nothing. A run whose ``run.json`` says ``running`` while nobody holds its lock was
killed outright: it is ``lost``, and said so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parsgd.engine.loop import Position
from parsgd.engine.rundir import RESULT_FILES, RunDirectory, read_record, read_trace
from parsgd.errors import ConfigError


@dataclass
class Start:
    """How a run begins: its position, the trace rows it keeps and the models it loads."""

    position: Position = field(default_factory=Position)
    keep_rows: int | None = None  # None: a fresh trace
    W: np.ndarray | None = None
    done: str | None = None  # the run is complete already: why nothing is done
    notes: list[str] = field(default_factory=list)  # for log.txt


def run_status(run_dir: RunDirectory, record: dict[str, Any]) -> str:
    """The status ``run.json`` records, or ``lost`` where it says running and no one is."""
    status = str(record.get("status", "unknown"))
    if status == "running" and not run_dir.owner_alive():
        return "lost"
    return status


def find_start(run_dir: RunDirectory, digest: str, resume: bool, force: bool) -> Start:
    """Decide how the run begins; ConfigError (nothing written) where it must not."""
    if not run_dir.root.exists():
        return Start()
    run_dir.check_files()
    if run_dir.owner_alive():
        raise ConfigError(f"another parsgd run is writing to {run_dir.root}")
    if force:
        return Start()
    if resume and run_dir.checkpoint_path.exists():
        return _from_checkpoint(run_dir, digest)
    if not run_dir.status_path.exists():
        held = [name for name in RESULT_FILES if (run_dir.root / name).exists()]
        if held and not resume:
            raise ConfigError(
                f"{run_dir.root} already holds {', '.join(held)}; use --force to replace "
                "them or --resume to continue the run"
            )
        if held:
            _say(f"no checkpoint in {run_dir.root}: starting from the beginning")
        return Start()
    try:
        record = read_record(run_dir.status_path)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; use --force to replace the run") from None
    status = run_status(run_dir, record)
    same = record.get("config_hash") == digest
    if status == "completed" and same:
        return Start(done="already completed with this config, nothing to do; --force reruns it")
    if not resume:
        raise ConfigError(
            f"{run_dir.root} already holds a run ({status}); use --force to replace it "
            "or --resume to continue it"
        )
    if not same:
        raise ConfigError(
            f"{run_dir.root} holds a run ({status}) of a different config (hash "
            f"{record.get('config_hash')}, this one {digest}); --resume continues only the "
            "same config: use --force to replace it, or another name"
        )
    _say(f"{run_dir.root}: run {status}, no checkpoint: starting from the beginning")
    return Start()


def _from_checkpoint(run_dir: RunDirectory, digest: str) -> Start:
    W, meta = run_dir.read_checkpoint()
    if meta["config_hash"] != digest:
        raise ConfigError(
            f"{run_dir.checkpoint_path} was written by a different config "
            f"(hash {meta['config_hash']}, this one {digest}); use --force to start over"
        )
    rows = _trace_rows(run_dir)
    if rows < meta["trace_rows"]:
        raise ConfigError(
            f"{run_dir.trace_path} holds {rows} whole rows but the checkpoint recorded "
            f"{meta['trace_rows']}; use --force to start over"
        )
    notes = []
    if run_dir.status_path.exists():
        try:
            status = run_status(run_dir, read_record(run_dir.status_path))
        except ConfigError:
            status = "unknown"  # run.json is damaged; the checkpoint carries what we need
        if status == "lost":
            note = (
                f"{run_dir.root}: the run's process is gone (lost); resuming from its "
                f"checkpoint at trial {meta['trial']} step {meta['step']}"
            )
            _say(note)
            notes.append(note)
    position = Position(meta["trial"], meta["step"], float(meta["wall_s"]))
    return Start(position, meta["trace_rows"], W, notes=notes)


def _trace_rows(run_dir: RunDirectory) -> int:
    """Whole rows of the trace; ConfigError (``read_trace``) if it is not a parsgd trace."""
    if not run_dir.trace_path.exists():
        return 0
    return len(read_trace(run_dir.trace_path))


def _say(text: str) -> None:
    print(f"parsgd: {text}", file=sys.stderr)
