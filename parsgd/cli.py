"""The ``parsgd`` command line: parse, load the config, dispatch. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from parsgd.config.load import Config, dump_config, load_config
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
    _add_plot_command(commands)
    _add_report_command(commands)
    _add_bench_command(commands)
    _add_sweep_command(commands)
    return parser


def _add_plot_command(commands: argparse._SubParsersAction) -> None:
    plot = commands.add_parser(
        "plot",
        help="figures of finished runs (PNG, PDF or SVG)",
        description="One curve per --by value (default: the config keys that differ between "
        "runs), mean over trials with a shaded band. --kind time-to-target: wall seconds to "
        "reach --target per averaging interval; --kind wallclock: both side by side.",
    )
    plot.add_argument("paths", type=Path, nargs="+", metavar="RUN_OR_SWEEP_DIR")
    plot.add_argument("-o", "--output", type=Path, required=True, help="fig.png|.pdf|.svg")
    plot.add_argument(
        "--kind", default="curves", help="curves (default) | time-to-target | wallclock"
    )
    plot.add_argument("--x", default="step", help="step (default) | samples | wall_s")
    plot.add_argument(
        "--y", default="loss", help="a trace column: loss (default), subopt, dist_opt_sq, ..."
    )
    plot.add_argument(
        "--by", action="append", metavar="KEY[,KEY]", help="dotted config key(s) per curve"
    )
    plot.add_argument("--band", default="stderr", help="stderr (default) | quantile (10%%-90%%)")
    plot.add_argument("--log", action="store_true", help="log y axis (automatic past 2 decades)")
    plot.add_argument("--logx", action="store_true", help="log x axis")
    plot.add_argument("--theory", action="store_true", help="closed form dashed, where known")
    plot.add_argument("--target", type=float, help="target value of --y (time-to-target)")
    plot.add_argument("--title", help="figure title (default: directories and counts)")
    plot.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from parsgd.analysis.plot import plot_command

    return plot_command(
        args.paths,
        args.output,
        kind=args.kind,
        x=args.x,
        y=args.y,
        by=args.by,
        band=args.band,
        log=args.log,
        logx=args.logx,
        theory=args.theory,
        target=args.target,
        title=args.title,
    )


def _add_report_command(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="a table of final figures per sweep; writes report.md and report.csv",
    )
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument("--target", type=float, help="also time to reach this loss")
    report.add_argument(
        "--by", action="append", metavar="KEY[,KEY]", help="one row per value (runs pooled)"
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from parsgd.analysis.report import report_command

    return report_command(args.directory, by=args.by, target=args.target)


def _add_bench_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="measure throughput, averaging cost, start-up and memory vs baselines"
    )
    bench.add_argument("--quick", action="store_true", help="a smaller run (under a minute)")
    bench.add_argument("--json", type=Path, default=None, metavar="FILE", help="write results")

    def run_bench(args: argparse.Namespace) -> int:
        from parsgd.bench.run import run_bench

        return run_bench(args.quick, args.json)

    bench.set_defaults(handler=run_bench)


def _add_sweep_command(commands: Any) -> None:
    from parsgd.sweep.command import add_sweep_arguments, sweep_command

    sweep = commands.add_parser(
        "sweep", help="many runs over a grid of config values, locally or as a SLURM array"
    )
    add_sweep_arguments(sweep)
    sweep.set_defaults(handler=sweep_command)


def _shown(steps: list[int]) -> str:
    return ", ".join(map(str, steps if len(steps) <= 10 else [*steps[:5], "...", *steps[-5:]]))


def _print_dry_run(config: Config) -> None:
    from parsgd.engine.plan import global_rounds
    from parsgd.schedules import AveragingSchedule

    steps = config["sgd"]["steps"]
    schedule = AveragingSchedule.from_config(config["averaging"])
    averaging = schedule.averaging_steps(steps)
    print(dump_config(config), end="")
    print(f"# averaging: {schedule.describe()}")
    print(f"# averaging steps: {_shown(averaging.tolist())}")
    global_every = config["averaging"]["global_every"]
    if global_every is not None or config["nodes"] > 1:
        rounds = global_rounds(averaging, global_every, steps).tolist()
        print(f"# nodes: {config['nodes']} x {config['workers']} workers")
        print(f"# global averaging steps: {_shown(rounds)}")
        print(f"# global syncs per trial: {len(rounds)}")
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
    except KeyboardInterrupt:
        # Before a run starts (loading, data) or after it has been recorded: nothing to save.
        print("parsgd: interrupted", file=sys.stderr)
        return 130
    print(f"{result.status}: {result.directory}" + (f" ({result.reason})" if result.reason else ""))
    return result.exit_status


if __name__ == "__main__":
    sys.exit(main())
