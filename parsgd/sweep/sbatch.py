"""The sbatch script of a sweep's job array: validated settings in, safe script text out (pure).

Where each value ends up, and how it is made safe there:

    #SBATCH lines   sbatch splits them into words itself (quotes and backslashes honoured,
                    an unquoted ``#`` starts a comment): scheduler values are checked against
                    SLURM's own formats and character sets; the log path is double-quoted
                    with ``\\`` and ``"`` escaped, and its ``%`` doubled (SLURM expands
                    ``%j``-style patterns in --output; ``%%`` is a literal ``%``).
    shell body      every path and argument is ``shlex.quote``d.
    setup lines     the user's own shell lines (``module load ...``, ``source venv/bin/activate``),
                    written verbatim, one per line: trusted like a line of the user's
                    ``.bashrc``, since they come only from the user's command line or sweep file.

A control character (newline, carriage return, NUL, ...) can end a line and start a command
in either place, so it is refused in every value, path and setup line alike.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parsgd.config.schema import show
from parsgd.errors import ConfigError

# SLURM's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (and no limit).
_TIME = re.compile(r"\d+(:\d{1,2}){0,2}|\d+-\d+(:\d{1,2}){0,2}|(?i:infinite|unlimited)")
_MEM = re.compile(r"\d+[KMGT]", re.IGNORECASE)
# Partition, account and QOS names: letters, digits, '_', '-', '.'; partitions may be a list.
_NAME = r"[A-Za-z0-9_.-]+"
_NAMES = {"partition": rf"{_NAME}(,{_NAME})*", "account": _NAME, "qos": rf"{_NAME}(,{_NAME})*"}
# A feature expression: names joined by & | , with [ ] ( ) grouping and *count.
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.:\-&|,\[\]()*]+")
_FLAG = re.compile(r"--[a-z][a-z0-9-]*(=[^\s\"'\\#]+)?")
_PLUGIN = re.compile(r"[a-z][a-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # all but tab
# Flags parsgd writes itself (or sets with its own option): not allowed as extra flags.
_MANAGED = {
    "array": "--array-parallelism",
    "output": None,
    "error": None,
    "open-mode": None,
    "signal": "--signal-s",
    "requeue": None,
    "no-requeue": None,
    "job-name": None,
    "nodes": "nodes in the config",
    "ntasks": None,
    "ntasks-per-node": None,
    "cpus-per-task": "--cpus-per-task",
    "time": "--time",
    "mem": "--mem",
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "constraint": "--constraint",
    "chdir": None,
    "wrap": None,
}
_SHOWN_MAX = 80
_SIGNAL_MAX_S = 65535
DEFAULT_TIME = "01:00:00"
DEFAULT_MPI = "pmi2"


def _shown(value: Any) -> str:
    """A value in a message: control characters escaped (JSON), cut short; one line always."""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else show(value)
    return text if len(text) <= _SHOWN_MAX else text[: _SHOWN_MAX - 4] + '..."'


def refuse_control(what: str, text: str) -> str:
    """``text`` if it has no control character (tab allowed); else a ConfigError."""
    match = _CONTROL.search(text)
    if match:
        raise ConfigError(
            f"{what} contains a control character ({match.group()!r}), which could end a "
            f"line of the batch script; got {_shown(text)}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not valid UTF-8; got {_shown(text)}") from None
    return text


def check_path(what: str, path: Path) -> Path:
    """A path that is written into the script: no control characters (spaces, %, quotes fine)."""
    refuse_control(what, str(path))
    return path


@dataclass(frozen=True)
class SlurmSettings:
    """What the user asked of SLURM (command line over the sweep file's ``slurm:``), checked."""

    time: str = DEFAULT_TIME
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    array_parallelism: int | None = None
    runs_per_task: int = 1
    signal_s: int = 60
    sbatch: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    mpi: str = DEFAULT_MPI


SETTING_KEYS = tuple(SlurmSettings.__dataclass_fields__)


def check_settings(raw: dict[str, Any], where: str) -> SlurmSettings:
    """Validate every value; ``where`` names the source in messages (``--time``, ``slurm.time``)."""
    for key in raw:
        if key not in SETTING_KEYS:
            close = difflib.get_close_matches(str(key), SETTING_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"{where}{key} is not a SLURM setting{hint} (valid: {', '.join(SETTING_KEYS)})"
            )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        name = f"{where}{key}" if where.endswith(".") else f"--{key.replace('_', '-')}"
        values[key] = _check_one(name, key, value)
    return SlurmSettings(**values)


def _check_one(name: str, key: str, value: Any) -> Any:
    if key in ("cpus_per_task", "array_parallelism", "runs_per_task", "signal_s"):
        low, high = (0, _SIGNAL_MAX_S) if key == "signal_s" else (1, None)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}; got {_shown(value)}")
        if high is not None and value > high:
            raise ConfigError(f"{name} must be at most {high} (SLURM's limit); got {value}")
        return value
    if key in ("sbatch", "setup"):
        lines = value.splitlines() if key == "setup" and isinstance(value, str) else value
        if not isinstance(lines, (list, tuple)) or not all(isinstance(v, str) for v in lines):
            raise ConfigError(f"{name} must be a list of strings; got {_shown(value)}")
        check = _check_flag if key == "sbatch" else _check_setup
        return tuple(check(name, line) for line in lines)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string; got {_shown(value)}")
    refuse_control(name, value)
    if key == "time" and not _TIME.fullmatch(value):
        raise ConfigError(
            f"{name} must be a SLURM time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS; "
            f"got {_shown(value)}"
        )
    if key == "mem" and not _MEM.fullmatch(value):
        raise ConfigError(
            f"{name} must be a size with a unit, e.g. 500M or 4G; got {_shown(value)}"
        )
    if key in _NAMES and not re.fullmatch(_NAMES[key], value):
        raise ConfigError(
            f"{name} must be a SLURM name of letters, digits, '_', '-', '.'; got {_shown(value)}"
        )
    if key == "constraint" and not _CONSTRAINT.fullmatch(value):
        raise ConfigError(
            f"{name} must be a feature expression (names with & | , [ ] ( ) *); got {_shown(value)}"
        )
    if key == "mpi" and not _PLUGIN.fullmatch(value):
        raise ConfigError(
            f"{name} must be an srun --mpi plugin name (pmi2, pmix); got {_shown(value)}"
        )
    return value


def _check_setup(name: str, line: str) -> str:
    refuse_control(name, line)
    if line.lstrip().upper().startswith("#SBATCH"):
        # Comments are skipped until the first command, so sbatch would obey it: use --sbatch.
        raise ConfigError(f"{name}: a setup line may not be an #SBATCH directive; use --sbatch")
    return line


def _check_flag(name: str, flag: str) -> str:
    refuse_control(name, flag)
    if not _FLAG.fullmatch(flag):
        raise ConfigError(
            f"{name}: each extra sbatch flag must look like --name or --name=value (no spaces, "
            f"quotes, backslashes or '#'); got {_shown(flag)}"
        )
    option = flag[2:].split("=", 1)[0]
    if option in _MANAGED:
        instead = _MANAGED[option]
        hint = f"; use {instead}" if instead else "; parsgd writes it itself"
        raise ConfigError(f"{name}: --{option} is not allowed as an extra flag{hint}")
    return flag


@dataclass(frozen=True)
class SbatchOptions:
    """Everything the sbatch script says; paths absolute. ``nodes > 1``: a multi-node array."""

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
    nodes: int = 1
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    extra: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()


def log_pattern(log_dir: Path) -> str:
    """``"<log_dir>/%A_%a.out"`` as one word of an #SBATCH line: the directory double-quoted
    with ``\\`` and ``"`` escaped and its own ``%`` doubled, so only %A and %a expand."""
    text = refuse_control("the log directory", str(log_dir))
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'"{text}/%A_%a.out"'


def make_sbatch_script(options: SbatchOptions) -> str:
    """The text of the job-array batch script (pure: same options, same bytes)."""
    array = f"0-{options.tasks - 1}"
    if options.array_parallelism is not None:
        array += f"%{options.array_parallelism}"
    shape = (
        ["#SBATCH --ntasks=1"]
        if options.nodes == 1
        else [f"#SBATCH --nodes={options.nodes}", "#SBATCH --ntasks-per-node=1"]
    )
    lines = [
        "#!/bin/bash",
        f"# parsgd sweep: {options.runs} runs in {options.tasks} array tasks.",
        "# Written by `parsgd sweep --slurm`; submitting the sweep again skips completed runs.",
        f"#SBATCH --job-name={options.job_name}",
        f"#SBATCH --array={array}",
        *shape,
        f"#SBATCH --cpus-per-task={options.cpus_per_task}",
        f"#SBATCH --time={options.time}",
    ]
    for flag in ("mem", "partition", "account", "qos", "constraint"):
        value = getattr(options, flag)
        if value is not None:
            lines.append(f"#SBATCH --{flag}={refuse_control(flag, value)}")
    lines += [f"#SBATCH {refuse_control('sbatch flag', flag)}" for flag in options.extra]
    lines += [
        f"#SBATCH --output={log_pattern(options.log_dir)}",
        "#SBATCH --open-mode=append",
        f"#SBATCH --signal=B:USR1@{options.signal_s}",
        "#SBATCH --requeue",
        "",
    ]
    if options.setup:
        lines += ["# Setup lines (from the sweep's SLURM settings), run before parsgd:"]
        lines += [refuse_control("setup line", line) for line in options.setup]
    lines += [
        f"cd {shlex.quote(refuse_control('workdir', str(options.workdir)))}",
        "exec " + " ".join(shlex.quote(refuse_control("command", p)) for p in options.command),
        "",
    ]
    return "\n".join(lines)
