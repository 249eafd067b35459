"""``parsgd bench``: run every measurement once, print the table, optionally write JSON."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from parsgd.bench import (
    averaging,
    c_meetings,
    contention,
    help,
    kernels,
    memory,
    mpi_global,
    report,
    throughput,
    torch_local_sgd,
)


def run_bench(quick: bool, json_path: Path | None) -> int:
    """Measure everything (baselines in the same run), print the table; 0 unless it crashed."""
    info: dict[str, Any] = {"quick": quick, "machine": report.machine()}
    started = time.perf_counter()
    raw: dict[str, Any] = {}
    for name, module in (
        ("kernels", kernels),
        ("averaging", averaging),
        ("throughput", throughput),
        ("memory", memory),
        ("torch", torch_local_sgd),
        ("contention", contention),
        ("help", help),
        ("mpi", mpi_global),
    ):
        tic = time.perf_counter()
        print(f"parsgd bench: {name} ...", flush=True)
        raw[name] = module.measure(quick)
        raw[name]["elapsed_s"] = time.perf_counter() - tic
    info["elapsed_s"] = time.perf_counter() - started
    info["load_avg_1m_after"] = os.getloadavg()[0]
    info["cpu_pressure_after"] = report._cpu_pressure()
    rows = (
        report.build_rows(raw)
        + c_meetings.rows(raw["throughput"])
        + mpi_global.rows(raw["mpi"], raw["averaging"])
    )
    print(report.baselines(raw))
    print(report.table(rows))
    m = info["machine"]
    print(
        f"machine: {m['cpu']}, {m['usable_cpus']} usable cpus, load {m['load_avg_1m']:.2f}"
        f" -> {info['load_avg_1m_after']:.2f}; {info['elapsed_s']:.0f} s"
    )
    if json_path is not None:
        report.write_json(json_path, raw, rows, info)
    return 0
