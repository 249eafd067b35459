"""The ``parsgd`` command line: parse, load the config, dispatch. No logic lives here."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parsgd.errors import ParsgdError

if TYPE_CHECKING:
    from parsgd.config.spec import RunSpec
    from parsgd.stepsets import StepSet

# Only argparse and the error types at import: ``parsgd --help`` and each subcommand's
# ``--help`` pay for no numpy, yaml or engine; each action imports what it runs.

_NETWORK_HELP = (
    "project wall-clock time onto a cluster: latency_us=50,bandwidth_gbps=10,nodes=8 (or "
    "calibrate=BENCH.json,nodes=8): measured compute + syncs x ring all-reduce cost"
)


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
    run.add_argument("--force", action="store_true", help="replace a run already in <out>/<name>/")
    run.add_argument(
        "--dry-run", action="store_true", help="print the resolved config and schedule only"
    )
    _add_plot_command(commands)
    _add_report_command(commands)
    _add_export_command(commands)
    _add_bench_command(commands)
    _add_sweep_command(commands)
    return parser


def _add_plot_command(commands: argparse._SubParsersAction) -> None:
    plot = commands.add_parser(
        "plot",
        help="figures of finished runs (PNG, PDF or SVG)",
        description="One curve per --by value (default: the config keys that differ between "
        "runs), mean over trials with a shaded band. --kind time-to-target: wall seconds to "
        "reach --target per averaging interval; --kind wallclock: both side by side; --kind "
        "final: each trial's last value against a swept key (--x, default averaging.every).",
    )
    plot.add_argument("paths", type=Path, nargs="+", metavar="RUN_OR_SWEEP_DIR")
    plot.add_argument("-o", "--output", type=Path, required=True, help="fig.png|.pdf|.svg")
    plot.add_argument(
        "--kind",
        default="curves",
        help="curves (default) | time-to-target | wallclock | final (last value against --x)",
    )
    plot.add_argument(
        "--x",
        help="step (default) | samples | wall_s; --kind final: a swept config key "
        "(default averaging.every)",
    )
    plot.add_argument(
        "--y", help="a trace column: loss (default), subopt, dist_opt_sq, test_accuracy, ..."
    )
    plot.add_argument(
        "--by", action="append", metavar="KEY[,KEY]", help="dotted config key(s) per curve"
    )
    plot.add_argument("--band", default="stderr", help="stderr (default) | quantile (10%%-90%%)")
    plot.add_argument("--log", action="store_true", help="log y axis (automatic past 2 decades)")
    plot.add_argument("--logx", action="store_true", help="log x axis")
    plot.add_argument("--theory", action="store_true", help="closed form dashed, where known")
    plot.add_argument(
        "--target",
        help="time-to-target goal: METRIC>=VALUE, METRIC<=VALUE, or a value of --y (direction "
        "inferred: higher is better for accuracy and alignment)",
    )
    plot.add_argument("--title", help="figure title (default: the sweep and what varies)")
    plot.add_argument("--facet", metavar="KEY", help="one panel per value of this config key")
    plot.add_argument("--ylim", metavar="LOW,HIGH", help="y range (either end may be empty)")
    plot.add_argument(
        "--log-time", action="store_true", help="log axis for the wall-clock seconds of bars"
    )
    plot.add_argument(
        "--paired-with",
        metavar="KEY=VALUE",
        help="curves of each run's difference from the run with KEY=VALUE, trial by trial "
        "(95%% CI); runs must share their draws",
    )
    plot.add_argument("--network", metavar="SPEC", help=_NETWORK_HELP)
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
        facet=args.facet,
        ylim=args.ylim,
        log_time=args.log_time,
        paired_with=args.paired_with,
        network=args.network,
    )


def _add_report_command(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="a table of final figures per sweep; writes report.md and report.csv",
    )
    report.add_argument("directory", type=Path, metavar="DIR")
    report.add_argument(
        "--target",
        help="also the time to a target: METRIC>=VALUE, METRIC<=VALUE, or a loss value "
        "(e.g. test_accuracy>=0.95, loss<=0.1; direction inferred when left out)",
    )
    report.add_argument(
        "--columns",
        metavar="A,B,...",
        help="trace columns (finals) and figures to show; default: the usual ones plus test "
        "metrics where recorded",
    )
    report.add_argument(
        "--paired-with",
        metavar="KEY=VALUE",
        help="each row's difference from the run with KEY=VALUE in the final loss (or the "
        "--target metric), trial by trial, with its 95%% CI; runs must share their draws",
    )
    report.add_argument("--network", metavar="SPEC", help=_NETWORK_HELP)
    report.add_argument(
        "--by", action="append", metavar="KEY[,KEY]", help="one row per value (runs pooled)"
    )
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from parsgd.analysis.report import report_command

    return report_command(
        args.directory,
        by=args.by,
        target=args.target,
        columns=args.columns,
        paired_with=args.paired_with,
        network=args.network,
    )


def _add_export_command(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export",
        help="one tidy table of runs (run x trial x step, swept keys as columns): CSV or parquet",
    )
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("-o", "--output", type=Path, required=True, help="runs.csv|runs.parquet")
    export.add_argument("--finals", action="store_true", help="one row per run x trial (last)")

    def run_export(args: argparse.Namespace) -> int:
        from parsgd.analysis.export import export_command

        return export_command(args.directory, args.output, finals=args.finals)

    export.set_defaults(handler=run_export)


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


def _shown(steps: StepSet) -> str:
    """The steps, or the first and last five of more than ten (never all of them listed)."""
    n = steps.size
    if n <= 10:
        return ", ".join(map(str, steps.steps().tolist()))
    ends = [steps.nth(k) for k in (*range(5), *range(n - 5, n))]
    return ", ".join(map(str, [*ends[:5], "...", *ends[5:]]))


def _print_dry_run(spec: RunSpec) -> None:
    from parsgd.config.files import dump_config
    from parsgd.schedules import global_set

    steps = spec.sgd.steps
    schedule = spec.averaging.schedule
    averaging = schedule.step_set(steps)
    print(dump_config(spec.to_dict()), end="")
    print(f"# averaging: {schedule.describe()}")
    print(f"# averaging steps: {_shown(averaging)}")
    global_every = spec.averaging.global_every
    if global_every is not None or spec.nodes > 1:
        rounds = global_set(averaging, global_every, steps)
        print(f"# nodes: {spec.nodes} x {spec.workers} workers")
        print(f"# global averaging steps: {_shown(rounds)}")
        print(f"# global syncs per trial: {rounds.size}")
    print(f"# syncs per trial: {averaging.size}; trials: {spec.trials}")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (``parsgd sweep --list | head``): stop quietly, as cat does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    finally:
        gc.enable()  # off during a run's start-up (_main); on for whoever called main()


def _main(argv: list[str] | None) -> int:
    # A run's start-up makes a million long-lived objects (numba's type registries, most of
    # them) and nothing to collect: the cyclic collector would scan them all, two full
    # passes and ~260 young ones, ~120 ms of a 0.8 s start. It stays off until numba's
    # registries are loaded (numba_start.start_numba turns it back on).
    gc.disable()
    args = _parser().parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is not None:  # subcommands other than run: handler(args) -> exit status
        gc.enable()
        try:
            return int(handler(args))
        except ParsgdError as exc:
            print(f"parsgd: error: {exc}", file=sys.stderr)
            return exc.exit_status
    try:
        from parsgd.config.load import load_config

        spec = load_config(args.config, args.overrides)
        if args.dry_run:
            _print_dry_run(spec)
            return 0
        from parsgd.engine.runner import run_experiment

        result = run_experiment(spec, args.out, resume=args.resume, force=args.force)
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
