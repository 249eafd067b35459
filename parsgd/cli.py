"""The ``parsgd`` command line: parse, load the config, dispatch. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from parsgd.config import Config, dump_config, load_config
from parsgd.errors import ParsgdError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parsgd", description="Parallel SGD with model averaging, on real processes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one experiment (all its trials)")
    run.add_argument("config", type=Path, help="YAML config file")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set averaging.every=10 (repeatable)",
    )
    run.add_argument("--out", type=Path, default=Path("results"), help="results root")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    run.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and schedule only"
    )
    _add_sweep_command(commands)
    return parser


def _add_sweep_command(commands: Any) -> None:
    from parsgd.sweep_command import add_sweep_arguments, sweep_command

    sweep = commands.add_parser(
        "sweep", help="many runs over a grid of config values, locally or as a SLURM array"
    )
    add_sweep_arguments(sweep)
    sweep.set_defaults(handler=sweep_command)


def _print_dry_run(config: Config) -> None:
    from parsgd.schedules import AveragingSchedule

    steps = config["sgd"]["steps"]
    schedule = AveragingSchedule.from_config(config["averaging"])
    averaging = schedule.averaging_steps(steps).tolist()
    shown = averaging if len(averaging) <= 10 else [*averaging[:5], "...", *averaging[-5:]]
    print(dump_config(config), end="")
    print(f"# averaging: {schedule.describe()}")
    print(f"# averaging steps: {', '.join(map(str, shown))}")
    print(f"# syncs per trial: {len(averaging)}; trials: {config['trials']}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is not None:  # subcommands other than run: handler(args) -> exit status
        try:
            return int(handler(args))
        except ParsgdError as exc:
            print(f"parsgd: error: {exc}", file=sys.stderr)
            return exc.exit_status
    try:
        config = load_config(args.config, args.overrides)
        if args.dry_run:
            _print_dry_run(config)
            return 0
        from parsgd.engine.runner import run_experiment

        result = run_experiment(config, args.out, resume=args.resume)
    except ParsgdError as exc:
        print(f"parsgd: error: {exc}", file=sys.stderr)
        return exc.exit_status
    print(f"{result.status}: {result.directory}" + (f" ({result.reason})" if result.reason else ""))
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
