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

# Ours may cost at most 1.5x what the C ceiling does (a ratio of 2/3), as the MPI rows allow
# over mpi4py's Allreduce: our meetings also check for faults, stops and NaN.
CEILING_SHARE = 0.67


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
    # The most any implementation reaches on this host (the C ceiling's meeting with our
    # step): a ratio below a target that the host itself does not allow is "host-bound",
    # provided ours comes within CEILING_SHARE of what the host allows.
    bound: float | None = None

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
        if value <= self.target if below and not self.baseline else value >= self.target:
            return "pass"
        if self.bound is not None and self.bound < self.target:
            return "host-bound" if value >= CEILING_SHARE * self.bound else "FAIL"
        return "FAIL"


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


C_FAST = "C -O3 -march=native -ffast-math"


def kernel_rows(kernels: dict[str, Any]) -> list[Row]:
    """One worker's SGD loop against the C ceiling and the other baselines, dense and CSR."""
    rows: list[Row] = []
    for d in (10, 100, 1000):
        rates, name = kernels[f"dense_d{d}"], f"SGD kernel d={d}"
        rows += [
            _rate_row(name, rates, "numba", "c_fast", 0.8, C_FAST),
            _rate_row(name, rates, "numba", "c_O2", None, "C -O2"),
            _rate_row(name, rates, "numba", "numba_fastmath", None, "numba fastmath=True"),
            _rate_row(
                name, rates, "numba", "sklearn", 1.0 if d == 100 else None, "sklearn SGDRegressor"
            ),
            _rate_row(name, rates, "numba", "numpy_loop", None, "numpy per-sample loop"),
        ]
    sparse, name = kernels["csr_rcv1"], "SGD kernel rcv1-shaped CSR"
    note = "the engine's CSR loop (kernels.linear.sgd_csr), as sparse runs use it"
    rows += [
        _rate_row(name, sparse, "numba", "c_fast", 0.8, C_FAST, note),
        _rate_row(name, sparse, "numba", "c_O2", None, "C -O2"),
        _rate_row(name, sparse, "numba", "sklearn", None, "sklearn SGDRegressor"),
    ]
    for entry in kernels.get("uniforms", []):
        draw, step = entry["draw_s"] * 1e9, entry["kernel_s"] * 1e9
        rows.append(
            Row(
                f"PCG64 uniform drawn ahead, per step, d={entry['d']}",
                draw,
                "ns",
                "the SGD step it feeds",
                step,
                draw / step,
                note="ratio = share of a step's time; blocks of 10,000 steps",
            )
        )
    return rows


def baselines(raw: dict[str, Any]) -> str:
    """What every baseline is, with its version and flags (printed above the table)."""
    kernels = raw["kernels"]
    v, flags = kernels["versions"], kernels["c_flags"]
    lines = ["baselines:"]
    for name, flag in flags.items():
        lines.append(f"  {name}: {v['cc']}, {flag} -shared -fPIC")
    lines.append(
        f"  numba {v['numba']}: ours fastmath={{contract, reassoc}}; baseline fastmath=True"
    )
    lines.append(f"  numpy {v['numpy']}; scikit-learn {v['sklearn']}")
    torch = raw.get("torch", {})
    lines.append(
        f"  torch: {torch['skipped']}"
        if "skipped" in torch
        else f"  torch {torch.get('torch')}: PeriodicModelAverager over gloo, 2 ranks"
    )
    meet = raw["throughput"].get("ceiling", {})
    if "flags" in meet:
        lines.append(f"  C two threads (meetings): {meet['compiler']}, {' '.join(meet['flags'])}")
    mpi = raw["averaging"].get("mpi_note") or "in-place Allreduce, 2 ranks on one node"
    lines.append(f"  MPI: mpi4py {v.get('mpi4py')}, mpich {v.get('mpich')}: {mpi}")
    return "\n".join(lines)


def torch_and_contention_rows(raw: dict[str, Any]) -> list[Row]:
    """Ours against the PyTorch way, and the meeting cost with a competing process."""
    rows: list[Row] = []
    torch, ours = raw.get("torch", {}), raw["throughput"]["m2"]  # M=2, d=100, every 1000
    theirs = torch.get("samples_per_s")
    rows.append(
        Row(
            "throughput M=2 d=100 every 1000",
            ours,
            "samples/s",
            "torch PeriodicModelAverager (gloo)",
            theirs,
            ours / theirs if ours and theirs else None,
            1.0,
            torch.get("skipped", "per-sample nn.Linear local SGD, 2 ranks on 127.0.0.1"),
        )
    )
    contention = raw.get("contention")
    if contention:
        alone, busy = contention["alone"], contention["competing"]
        for stat in ("median", "p90", "max"):
            rows.append(
                Row(
                    f"meeting cost every 1 M=2 d=100, competing process, {stat}",
                    busy[stat] * 1e6,
                    "us",
                    "same run, no competitor",
                    alone[stat] * 1e6,
                    note="mean over the meetings of one eval interval" if stat == "max" else "",
                )
            )
    return rows


def build_rows(raw: dict[str, Any]) -> list[Row]:
    rows = kernel_rows(raw["kernels"])
    thr = raw["throughput"]
    rows.append(
        Row(
            "parallel efficiency M=2 vs M=1 (every 1000)",
            thr["m2"],
            "samples/s",
            "M=1",
            thr["m1"],
            thr["m2"] / thr["m1"],
            1.9,
        )
    )
    curve = thr["h_curve"]
    for h, rate in curve.items():  # every 1 is judged against its ceiling (c_meetings.rows)
        if h != "1":
            rows.append(
                Row(
                    f"throughput M=2 d=100 every {h}",
                    rate,
                    "samples/s",
                    "every end",
                    curve["end"],
                    rate / curve["end"],
                )
            )

    rows += torch_and_contention_rows(raw)
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
    rows.append(Row("start-up to first step (warm cache)", start["first_step_s"], "s", target=0.65))
    rows.append(
        Row(
            "start-up to first step, every 1 (warm cache)",
            start["first_step_fastpath_s"],
            "s",
            target=0.65,
            note="includes loading the compiled averaging rounds before the fork",
        )
    )
    numpy_s = raw["help"]["import_numpy"]
    for key, command in (
        ("help", "--help"),
        ("plot_help", "plot --help"),
        ("sweep_help", "sweep --help"),
    ):
        seconds = raw["help"][key]
        ratio = numpy_s / seconds  # >= 1/1.5: at most 1.5x the time of import numpy
        note = "ratio = import numpy / ours; target: at most 1.5x import numpy"
        rows.append(
            Row(f"parsgd {command}", seconds, "s", "import numpy", numpy_s, ratio, 1 / 1.5, note)
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
