"""Memory and start-up of ``parsgd run`` as a user runs it: a subprocess, watched from outside.

Memory: the proportional set size (PSS) of the coordinator and of each worker, sampled while
the workers run on a data set of a given size; pages of the shared data set are split among
the processes that map them, so the total counts the data set once if it is held once.
Start-up: from spawning ``parsgd run`` to worker 0's "started" log line (it precedes the first
SGD step by the step-0 trace row only), warm compile cache; and the cost of one more trial.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import yaml

_D = 100
_SAMPLES = 20  # PSS samples (0.1 s apart) taken while the workers run


def _write(path: Path, **config: Any) -> Path:
    base: dict[str, Any] = {
        "name": "bench",
        "seed": 0,
        "trials": 1,
        "workers": 2,
        "backend": "processes",
        "data": {"kind": "gaussian_linear", "n": 2000, "d": 10, "noise": 0.1},
        "sgd": {"steps": 100, "step_size": 0.01},
        "averaging": {"every": "end"},
        "eval": {"every": 100},
    }
    base.update(config)
    path.write_text(yaml.safe_dump(base))
    return path


def _command(config: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "parsgd", "run", str(config), "--out", str(out)]


def _pss(proc: psutil.Process) -> float:
    try:
        return float(proc.memory_full_info().pss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return float("nan")


def _private(proc: psutil.Process) -> float:
    """Bytes only this process maps (its own heap, copied-on-write pages, compiled code)."""
    try:
        return float(proc.memory_full_info().uss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return float("nan")


def _workers(coordinator: psutil.Process) -> list[psutil.Process]:
    """The coordinator's live children, not counting multiprocessing's resource tracker."""
    found = []
    for child in coordinator.children():
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass  # gone (or a zombie) between listing and looking
    return found


def _rollup(pid: int) -> dict[str, float]:
    """PSS split by kind (shared memory, anonymous, files) from /proc, in bytes, if readable."""
    parts: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Pss_Shmem", "Pss_Anon", "Pss_File"):
                parts[key] = float(rest.split()[0]) * 1024
    except OSError:
        pass
    return parts


def pss_run(data_gb: float, workers: int = 2) -> dict[str, Any]:
    """Total PSS (bytes) of coordinator + workers while the workers run, and each one's part.

    ``data_gb`` is in 1e9 bytes: X and y together, float64. The processes are read one after
    another, so while the workers are still mapping data pages for the first time a sample
    over-counts (the coordinator's share is read before the workers map the page); the figure
    is the median of the samples in the second half of the window, once mapping has settled.
    """
    n = int(data_gb * 1e9 / ((_D + 1) * 8))
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        data = {"kind": "gaussian_linear", "n": n, "d": _D, "noise": 0.1}
        steps = 4_000_000
        config = _write(
            Path(tmp) / "memory.yaml",
            workers=workers,
            data=data,
            sgd={"steps": steps, "step_size": 0.001},
            eval={"every": steps // 40},  # meetings, so that SIGINT stops the run promptly
        )
        proc = subprocess.Popen(
            _command(config, Path(tmp)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        coordinator = psutil.Process(proc.pid)
        seen: list[dict[str, Any]] = []
        stopping = False
        try:
            while proc.poll() is None:
                if len(seen) == _SAMPLES and not stopping:
                    proc.send_signal(signal.SIGINT)  # enough seen: stop at the next meeting
                    stopping = True  # (only once: a second SIGINT means "stop now")
                children = _workers(coordinator)
                if len(children) == workers and len(seen) < _SAMPLES:
                    procs = [coordinator, *children]
                    sizes = [_pss(c) for c in procs]
                    if all(np.isfinite(sizes)):
                        seen.append({
                            "total": sum(sizes),
                            "coordinator": sizes[0],
                            "workers": sizes[1:],
                            "private": [_private(c) for c in procs],
                            "kinds": [_rollup(c.pid) for c in procs],
                        })  # fmt: skip
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, stderr = proc.communicate(timeout=60)
        if proc.returncode not in (0, 130):  # 130: interrupted by our SIGINT, as intended
            raise RuntimeError(f"memory run failed ({proc.returncode}): {stderr.decode()[-300:]}")
    if not seen:
        raise RuntimeError("the memory run ended before its workers could be measured")
    settled = sorted(seen[len(seen) // 2 :], key=lambda sample: sample["total"])
    result = dict(settled[len(settled) // 2])
    result["max_total"] = max(sample["total"] for sample in seen)
    result["data_bytes"] = n * (_D + 1) * 8
    return result


_STARTED = re.compile(r"^(\S+ \S+) .*worker 0 started")


def _startup_once(config: Path, out: Path) -> tuple[float, float]:
    """(seconds to worker 0's start line, seconds for the whole run) of one ``parsgd run``."""
    tic_wall, tic = time.time(), time.perf_counter()
    subprocess.run(_command(config, out), check=True, capture_output=True, timeout=120)
    total = time.perf_counter() - tic
    started = None
    for line in (out / "bench" / "log.txt").read_text().splitlines():
        match = _STARTED.match(line)
        if match:
            started = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    if started is None:
        raise RuntimeError("no 'worker 0 started' line in log.txt")
    return started - tic_wall, total


def startup(reps: int) -> dict[str, Any]:
    """Median start-up seconds, and the extra seconds per trial (10 trials against 1)."""
    with tempfile.TemporaryDirectory(prefix="parsgd_bench_") as tmp:
        one = _write(Path(tmp) / "one.yaml")
        many = _write(Path(tmp) / "many.yaml", trials=11)
        fast = _write(Path(tmp) / "fast.yaml", averaging={"every": 1})
        _startup_once(one, Path(tmp) / "warm")  # fill the compile caches
        _startup_once(fast, Path(tmp) / "warm_fast")
        firsts, fasts, ones, manys = [], [], [], []
        for rep in range(reps):
            first, total_one = _startup_once(one, Path(tmp) / f"one{rep}")
            _, total_many = _startup_once(many, Path(tmp) / f"many{rep}")
            fasts.append(_startup_once(fast, Path(tmp) / f"fast{rep}")[0])
            firsts.append(first)
            ones.append(total_one)
            manys.append(total_many)
    return {
        "first_step_s": float(np.median(firsts)),
        "first_step_fastpath_s": float(np.median(fasts)),
        "run_total_s": float(np.median(ones)),
        "per_extra_trial_s": float(np.median(np.subtract(manys, ones))) / 10,
    }


def measure(quick: bool) -> dict[str, Any]:
    return {
        "pss": pss_run(0.1 if quick else 1.0),
        "startup": startup(1 if quick else 5),
    }
