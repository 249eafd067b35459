"""Turn the measurements into rows (ours, baseline, ratio, target, pass/fail), a table and JSON.

Every ratio is "how many times better ours is" (a rate over a rate, or a baseline's latency
over ours), so a target is always a lower bound on the ratio.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Row:
    measure: str
    ours: float | None
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio: float | None = None
    target: float | None = None  # the ratio (or, without a baseline, ours) must reach this
    note: str = ""

    @property
    def result(self) -> str:
        if self.target is None:
            return "info"
        if self.ratio is None and self.baseline:
            return "skipped"
        value = self.ratio if self.baseline else self.ours
        if value is None:
            return "skipped"
        below = self.unit in ("s", "GB")  # absolute targets on costs are upper bounds
        return (
            "pass"
            if (value <= self.target if below and not self.baseline else value >= self.target)
            else "FAIL"
        )


def _rate_row(
    measure: str,
    rates: dict[str, Any],
    ours: str,
    base: str,
    target: float | None,
    label: str,
    note: str = "",
) -> Row:
    mine, theirs = rates.get(ours), rates.get(base)
    ratio = mine / theirs if mine and theirs else None
    if theirs is None:
        note = note or f"{label} not available: skipped"
    return Row(measure, mine, "updates/s", label, theirs, ratio, target, note)


def _latency_row(
    measure: str,
    mine: float,
    theirs: float | None,
    label: str,
    target: float | None,
    note: str = "",
) -> Row:
    ratio = theirs / mine if theirs else None
    return Row(
        measure, mine * 1e6, "us", label, theirs * 1e6 if theirs else None, ratio, target, note
    )


def build_rows(raw: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    kernels = raw["kernels"]
    for key, label in (("dense_d10", "d=10"), ("dense_d100", "d=100"), ("dense_d1000", "d=1000")):
        rates = kernels[key]
        target = 0.8 if key == "dense_d100" else None
        rows.append(_rate_row(f"SGD kernel {label}", rates, "numba", "c_O2", target, "C -O2"))
        rows.append(
            _rate_row(
                f"SGD kernel {label}",
                rates,
                "numba",
                "sklearn",
                1.0 if key == "dense_d100" else None,
                "sklearn SGDRegressor",
            )
        )
        rows.append(
            _rate_row(
                f"SGD kernel {label}", rates, "numba", "numpy_loop", None, "numpy per-sample loop"
            )
        )
        rows.append(
            _rate_row(
                f"SGD kernel {label} fastmath",
                rates,
                "numba_fastmath",
                "c_fast",
                None,
                "C -O3 -march=native -ffast-math",
            )
        )
    sparse = kernels["csr_rcv1"]
    rows.append(
        _rate_row(
            "SGD kernel rcv1-shaped CSR",
            sparse,
            "numba",
            "c_O2",
            None,
            "C -O2",
            "the engine's CSR loop (objectives.linear.sgd_csr), as sparse runs use it",
        )
    )
    rows.append(
        _rate_row(
            "SGD kernel rcv1-shaped CSR", sparse, "numba", "sklearn", None, "sklearn SGDRegressor"
        )
    )

    thr = raw["throughput"]
    rows.append(
        Row(
            "parallel efficiency M=2 vs M=1 (every 1000)",
            thr["m2"],
            "samples/s",
            "M=1",
            thr["m1"],
            thr["m2"] / thr["m1"],
            1.8,
        )
    )
    curve = thr["h_curve"]
    for name, rates in thr["objectives"].items():
        rows.append(
            Row(
                f"throughput M=2 {name} every 1",
                rates["1"],
                "samples/s",
                "every end",
                rates["end"],
                rates["1"] / rates["end"],
                0.2,
                "compiled meetings on every objective",
            )
        )
    for h, rate in curve.items():
        target = 0.4 if h == "1" else None
        rows.append(
            Row(
                f"throughput M=2 d=100 every {h}",
                rate,
                "samples/s",
                "every end",
                curve["end"],
                rate / curve["end"],
                target,
            )
        )

    avg = raw["averaging"]
    for key, value in avg.items():
        if not key.startswith("d"):
            continue
        d = int(key[1:])
        big = d >= 100_000
        label, mine = f"averaging round M=2 d={d:.0e}", value["engine_compiled"]
        rows.append(
            _latency_row(label, mine, value["memcpy"], "memcpy of M models", 1 / 3 if big else None)
        )
        rows.append(
            _latency_row(
                label,
                mine,
                value["mpi_allreduce"],
                "MPI Allreduce (2 ranks)",
                1.0,
                avg.get("mpi_note", ""),
            )
        )
        rows.append(_latency_row(label, mine, value["mp_barrier"], "round behind mp.Barrier", None))
        rows.append(
            _latency_row(
                label,
                mine,
                value["engine_per_call"],
                "one meeting per call",
                None,
                "the compiled meeting entered from Python each time, as recording meetings are",
            )
        )

    mem = raw["memory"]
    pss, start = mem["pss"], mem["startup"]
    data_gb = pss["data_bytes"] / 1e9
    rows.append(
        Row(
            f"total PSS, {data_gb:.2f} GB data, M=2",
            pss["total"] / 1e9,
            "GB",
            target=data_gb + 0.3,
            note="target: data + 0.3 GB",
        )
    )
    private = pss.get("private", [None] * (1 + len(pss["workers"])))
    kinds = pss.get("kinds", [{}] * (1 + len(pss["workers"])))
    names = ["coordinator"] + [f"worker {rank}" for rank in range(len(pss["workers"]))]
    values = [pss["coordinator"], *pss["workers"]]
    for name, value, own, kind in zip(names, values, private, kinds, strict=True):
        note = f"private (USS) {own / 1e9:.3f} GB" if own is not None else ""
        if kind:
            note += "; " + ", ".join(f"{k} {v / 1e9:.3f} GB" for k, v in kind.items())
        rows.append(Row(f"PSS {name}", value / 1e9, "GB", note=note))
    rows.append(Row("start-up to first step (warm cache)", start["first_step_s"], "s", target=1.5))
    rows.append(
        Row(
            "start-up to first step, every 1 (warm cache)",
            start["first_step_fastpath_s"],
            "s",
            target=1.5,
            note="includes loading the compiled averaging rounds before the fork",
        )
    )
    rows.append(Row("whole tiny run (start to exit)", start["run_total_s"], "s"))
    rows.append(
        Row(
            "cost of one more trial (tiny)",
            start["per_extra_trial_s"],
            "s",
            note="start-up is paid once per run, not per trial",
        )
    )
    return rows


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1e5:
        return f"{value:.3g}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table(rows: list[Row]) -> str:
    header = ("measure", "ours", "unit", "baseline", "baseline", "ratio", "target", "result")
    lines = [header]
    for r in rows:
        target = "-" if r.target is None else (">=" if r.baseline else "<=") + _fmt(r.target)
        lines.append(
            (
                r.measure,
                _fmt(r.ours),
                r.unit,
                r.baseline or "-",
                _fmt(r.baseline_value),
                _fmt(r.ratio),
                target,
                r.result,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    notes = [f"  {r.measure} / {r.baseline or '-'}: {r.note}" for r in rows if r.note]
    return "\n".join(text + (["notes:", *notes] if notes else []))


def _cpu_pressure() -> str | None:
    """Linux PSI: the share of time some runnable task waited for a CPU (noise indicator)."""
    path = Path("/proc/pressure/cpu")
    return path.read_text().splitlines()[0] if path.exists() else None


def machine() -> dict[str, Any]:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import numba
    import numpy

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg_1m": os.getloadavg()[0],
        "cpu_pressure": _cpu_pressure(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_json(path: Path, raw: dict[str, Any], rows: list[Row], info: dict[str, Any]) -> None:
    record = {**info, "rows": [{**asdict(r), "result": r.result} for r in rows], "raw": raw}
    path.write_text(json.dumps(record, indent=1))
