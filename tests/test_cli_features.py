"""Features reachable from the command line, each run through it and checked in the files it
wrote: step-size schedules (run, resume, sweep), method single and hogwild, averaging
schedules, eval.every auto, data options, a sweep's lost runs and --resume of a finished run,
and the sweep --slurm options as the sbatch script shows them."""

from __future__ import annotations

import json
import math
import os
import signal
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml
from conftest import (
    cli_output,
    run_cli,
    signal_in_steps,
    start_cli,
    trace_rows,
    wait_until,
    write_config,
)

from parsgd.data.synthetic import planted_weights, spectrum
from parsgd.engine.rundir import read_trace
from parsgd.sweep.state import read_index

# -- step-size schedules, against a closed form --------------------------------------------
#
# The quadratic with beta = sigma = 0 has no noise: g = A (w - w*) exactly, so from w = 0 a
# step is e' = (1 - eta_t l) e per coordinate, every worker alike, and
# dist_opt_sq(k) = sum_i e0_i^2 prod_{t<k} (1 - eta_t l_i)^2 whatever the averaging.

QUADRATIC = {"kind": "quadratic", "d": 4, "eig_max": 1.0, "eig_min": 0.25}


def _quadratic(path: Path, steps: int, step_size: Any, **sections: Any) -> Path:
    write_config(
        path, seed=0, trials=1,
        objective={**QUADRATIC, "beta": 0.0, "sigma": 0.0},
        sgd={"steps": steps, "step_size": step_size, "init": "zeros"},
        eval={"every": max(1, steps // 8)}, **sections,
    )  # fmt: skip
    raw = yaml.safe_load(path.read_text())
    raw["data"] = {"kind": "none"}
    path.write_text(yaml.safe_dump(raw))
    return path


def _eta(spec: dict[str, Any], steps: int) -> np.ndarray:
    """eta_t for t = 0..steps-1, written from the schedules' definitions in the README."""
    t = np.arange(steps, dtype=np.float64)
    eta0 = spec["eta0"]
    if spec["kind"] == "inverse":
        return eta0 / (1 + t / spec["t0"])
    if spec["kind"] == "inverse_sqrt":
        return eta0 / np.sqrt(1 + t / spec["t0"])
    if spec["kind"] == "step":
        return eta0 * spec["factor"] ** (t // spec["every"])
    assert spec["kind"] == "cosine"
    low = spec["min"]
    return low + (eta0 - low) * (1 + np.cos(math.pi * t / steps)) / 2


def _closed_form(spec: dict[str, Any], steps: int, at: list[int]) -> np.ndarray:
    lam = spectrum(4, 1.0, 0.25, None)
    e0_sq = planted_weights(4, 0) ** 2
    log_shrink = np.log((1 - np.outer(_eta(spec, steps), lam)) ** 2)  # [t, i]
    cumulative = np.vstack([np.zeros(4), np.cumsum(log_shrink, axis=0)])
    return np.array([float(e0_sq @ np.exp(cumulative[k])) for k in at])


def _check_trace(run_dir: Path, spec: dict[str, Any], steps: int) -> None:
    rows = read_trace(run_dir / "trace.csv")
    at = [int(r["step"]) for r in rows]
    assert at[-1] == steps
    measured = np.array([float(r["dist_opt_sq"]) for r in rows])
    np.testing.assert_allclose(measured, _closed_form(spec, steps, at), rtol=1e-9)
    # The check tells schedules apart: a constant eta0 gives another curve.
    constant = _closed_form({"kind": "step", "eta0": spec["eta0"], "factor": 1, "every": 1},
                            steps, at)  # fmt: skip
    assert np.max(np.abs(constant - measured) / measured) > 0.05


# Small enough that w stays well away from w* (no cancellation in dist_opt_sq's last digits).
STEP_SIZES = [
    {"kind": "inverse", "eta0": 0.05, "t0": 20},
    {"kind": "inverse_sqrt", "eta0": 0.03, "t0": 50},
    {"kind": "step", "eta0": 0.04, "factor": 0.5, "every": 100},
    {"kind": "cosine", "eta0": 0.05, "min": 0.005},
]


def test_step_size_schedules_through_a_sweep_follow_their_closed_forms(tmp_path: Path) -> None:
    _quadratic(tmp_path / "base.yaml", 400, 0.1, workers=2, averaging={"every": 10})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "lr", "base": "base.yaml",
                                     "grid": {"sgd.step_size": STEP_SIZES}}))  # fmt: skip
    done = run_cli("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    rows = read_index(tmp_path / "out" / "lr" / "index.csv")
    assert [r["status"] for r in rows] == ["completed"] * 4
    for row, spec in zip(rows, STEP_SIZES, strict=True):
        run_dir = tmp_path / "out" / "lr" / row["run_id"]
        assert yaml.safe_load((run_dir / "config.yaml").read_text())["sgd"]["step_size"]["kind"] \
            == spec["kind"]  # fmt: skip
        _check_trace(run_dir, spec, 400)


def test_step_size_schedule_continues_where_it_stopped_after_resume(tmp_path: Path) -> None:
    # Seconds of steps; the schedule halves eta every million steps, so a resumed run that
    # restarted its schedule (or its step count) would leave the closed form.
    steps = 4_000_000
    spec = {"kind": "step", "eta0": 4e-7, "factor": 0.5, "every": 1_000_000}
    config = _quadratic(tmp_path / "c.yaml", steps, spec, workers=2, averaging={"every": 100})
    proc = start_cli("run", str(config), "--out", str(tmp_path), logs=tmp_path / "logs")
    signal_in_steps(proc, tmp_path / "t", signal.SIGTERM)
    assert proc.wait(timeout=60) == 130, cli_output(tmp_path / "logs")
    assert 2 <= trace_rows(tmp_path / "t") < 9  # stopped mid-run
    resumed = run_cli("run", str(config), "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "completed" and record["resumed_from"]["step"] > 0
    _check_trace(tmp_path / "t", spec, steps)


def test_resume_of_a_completed_run_changes_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", trials=1)
    first = run_cli("run", str(config), "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr
    files = {p.name: p.read_bytes() for p in (tmp_path / "t").iterdir() if p.is_file()}
    again = run_cli("run", str(config), "--out", str(tmp_path), "--resume")
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "t").iterdir() if p.is_file()} == files


# -- methods and averaging schedules through the CLI ----------------------------------------


def test_single_budget_samples_and_steps(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", trials=1, workers=3, method="single",
                          sgd={"steps": 200}, eval={"every": 50})  # fmt: skip
    for budget, steps in (("samples", 600), ("steps", 200)):
        done = run_cli("run", str(config), "--set", f"single_budget={budget}",
                       "--set", f"name={budget}", "--out", str(tmp_path))  # fmt: skip
        assert done.returncode == 0, done.stderr
        saved = yaml.safe_load((tmp_path / budget / "config.yaml").read_text())
        assert saved["workers"] == 1 and saved["sgd"]["steps"] == steps
        last = read_trace(tmp_path / budget / "trace.csv")[-1]
        assert (int(last["step"]), int(last["samples"]), last["syncs"]) == (steps, steps, "0")
        record = json.loads((tmp_path / budget / "run.json").read_text())
        assert len(record["pids"]) == 1 and record["samples"] == steps


def test_hogwild_through_the_cli(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", trials=1, workers=2, method="hogwild",
                          sgd={"steps": 3000, "step_size": 0.02}, eval={"every": 500})  # fmt: skip
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "completed" and len(set(record["pids"])) == 2
    assert record["samples"] == 2 * 3000
    rows = read_trace(tmp_path / "t" / "trace.csv")
    assert [int(r["samples"]) for r in rows] == [2 * int(r["step"]) for r in rows]
    assert all(r["variance"] == "" and r["syncs"] == "0" for r in rows)  # one shared model
    assert float(rows[-1]["subopt"]) < 0.05 * float(rows[0]["subopt"])


@pytest.mark.parametrize(
    ("settings", "fired"),
    [
        (["averaging.every=null", "averaging.at=[5, 17, 100]"], [5, 17, 100, 120]),
        (["averaging.every=null",
          "averaging.phases=[{steps: 40, every: 7}, {steps: 80, every: 25}]"],
         [7, 14, 21, 28, 35, 40, 65, 90, 115, 120]),
        (["averaging.every=30", "averaging.warmup=5"], [1, 2, 3, 4, 5, 35, 65, 95, 120]),
        (["averaging.every=3", "averaging.growth=2"], [3, 9, 21, 45, 93, 120]),
    ],
    ids=["at", "phases", "warmup", "growth"],
)  # fmt: skip
def test_averaging_schedules_through_the_cli(
    tmp_path: Path, settings: list[str], fired: list[int]
) -> None:
    """The steps written by hand from each option's definition are where syncs goes up."""
    config = write_config(tmp_path / "c.yaml", trials=1, sgd={"steps": 120}, eval={"every": 1})
    sets = [arg for setting in settings for arg in ("--set", setting)]
    done = run_cli("run", str(config), *sets, "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = read_trace(tmp_path / "t" / "trace.csv")
    syncs = [int(r["syncs"]) for r in rows]
    assert [int(r["step"]) for r in rows] == list(range(121))
    assert [t for t in range(1, 121) if syncs[t] == syncs[t - 1] + 1] == fired
    assert syncs[-1] == len(fired) and all(0 <= b - a <= 1 for a, b in pairwise(syncs))


def test_eval_every_auto_records_about_fifty_rows(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", trials=1, sgd={"steps": 1000}, eval={"every": "auto"}
    )
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())["eval"]["every"] == 20
    steps = [int(r["step"]) for r in read_trace(tmp_path / "t" / "trace.csv")]
    assert steps == list(range(0, 1001, 20))


# -- data options -------------------------------------------------------------------------


def _csv(path: Path, X: np.ndarray, y: np.ndarray | None) -> Path:
    columns = X if y is None else np.column_stack([X, y])
    names = [f"x{i}" for i in range(X.shape[1])] + ([] if y is None else ["y"])
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in columns]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_standardize_scale_makes_a_badly_scaled_file_trainable(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 4)) * np.array([1.0, 1.0, 1.0, 300.0])
    y = X @ np.array([1.0, -1.0, 0.5, 0.01]) + 0.1 * rng.standard_normal(500)
    data = _csv(tmp_path / "d.csv", X, y)
    config = write_config(tmp_path / "c.yaml", trials=1, workers=2,
                          data={"kind": "file", "path": str(data)},
                          sgd={"steps": 400, "step_size": 0.05})  # fmt: skip
    raw = yaml.safe_load(config.read_text())
    raw["data"] = {"kind": "file", "path": data.name}
    config.write_text(yaml.safe_dump(raw))
    for how, status in (("none", "diverged"), ("scale", "completed")):
        done = run_cli("run", str(config), "--set", f"data.standardize={how}",
                       "--set", f"name={how}", "--out", str(tmp_path))  # fmt: skip
        record = json.loads((tmp_path / how / "run.json").read_text())
        assert record["status"] == status, (how, done.stderr)
    rows = read_trace(tmp_path / "scale" / "trace.csv")
    assert float(rows[-1]["subopt"]) < 0.01 * float(rows[0]["subopt"])


def test_label_null_uses_every_column_as_a_feature(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    # PCA on 3 columns whose top direction is the third: with a label column taken out
    # (the default label: -1, the last) it would not be there to find.
    X = rng.standard_normal((800, 3)) * np.array([0.5, 0.7, 3.0])
    data = _csv(tmp_path / "d.csv", X, None)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "t", "seed": 0, "trials": 1, "workers": 2,
        "data": {"kind": "file", "path": data.name, "label": None},
        "objective": {"kind": "pca"},
        "sgd": {"steps": 2000, "step_size": 0.01}, "eval": {"every": 500},
    }))  # fmt: skip
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load((tmp_path / "t" / "config.yaml").read_text())["data"]["label"] is None
    rows = read_trace(tmp_path / "t" / "trace.csv")
    assert float(rows[-1]["subopt"]) < 0.05 * float(rows[0]["subopt"])
    with_label = run_cli("run", str(config), "--set", "data.label=-1", "--set", "name=l",
                         "--out", str(tmp_path))  # fmt: skip
    assert with_label.returncode == 0, with_label.stderr
    # Two features instead of three: another problem, another optimum and trace.
    assert read_trace(tmp_path / "l" / "trace.csv")[0]["subopt"] != rows[0]["subopt"]


def test_iris_in_a_real_run(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "name": "iris", "seed": 0, "trials": 2, "workers": 2,
        "data": {"kind": "bundled", "name": "iris"}, "objective": {"kind": "least_squares"},
        "sgd": {"steps": 600, "step_size": 0.02}, "averaging": {"every": 20},
        "eval": {"every": 100},
    }))  # fmt: skip
    done = run_cli("run", str(config), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "iris" / "run.json").read_text())
    assert record["status"] == "completed" and record["trials_completed"] == 2
    rows = read_trace(tmp_path / "iris" / "trace.csv")
    assert len(rows) == 2 * 7
    first, last = rows[0], rows[6]
    assert float(last["subopt"]) < 0.1 * float(first["subopt"])
    assert float(last["loss"]) < float(first["loss"])


# -- sweeps: lost runs, and the SLURM options as written ------------------------------------


def test_a_run_killed_with_its_sweep_is_lost_then_rerun(tmp_path: Path) -> None:
    base = write_config(tmp_path / "base.yaml", workers=1, sgd={"steps": 4_000_000},
                        averaging={"every": 100}, eval={"every": 200_000})  # fmt: skip
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": base.name,
                                     "grid": {"sgd.step_size": [0.01]}}))  # fmt: skip
    out = tmp_path / "out"
    proc = start_cli("sweep", str(sweep), "--out", str(out), logs=tmp_path / "logs",
                     new_session=True)  # fmt: skip
    (run_dir,) = _wait_for_run_dir(out / "s", proc)
    assert wait_until(lambda: trace_rows(run_dir) >= 2 or proc.poll() is not None, 120, 0.01)
    assert proc.poll() is None, "the sweep ended before it was killed: lengthen its run"
    # As a node dies: every process at once, none left to record the end. Both are frozen
    # first, each waited for until it is stopped (a SIGUSR1 arriving while SIGSTOP is still
    # pending is taken first, lower signal number first), then the run is killed before the
    # sweep: a sweep dying first orphans the stopped run's process group, which the kernel
    # then continues (SIGHUP, SIGCONT), and the run took the sweep's death (SIGUSR1) and
    # stopped cleanly as `interrupted` before its SIGKILL came (seen under -n 2).
    run_pid = json.loads((run_dir / "run.json").read_text())["coordinator_pid"]
    for pid in (run_pid, proc.pid):
        os.kill(pid, signal.SIGSTOP)
        stopped = wait_until(lambda p=pid: psutil.Process(p).status() == psutil.STATUS_STOPPED, 30)
        assert stopped, pid
    os.kill(run_pid, signal.SIGKILL)
    # A zombie until the sweep, stopped, is killed too and init reaps it.
    assert wait_until(lambda: psutil.Process(run_pid).status() == psutil.STATUS_ZOMBIE, 30)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert wait_until(lambda: not psutil.pid_exists(run_pid) or
                      psutil.Process(run_pid).status() == psutil.STATUS_ZOMBIE, 30)  # fmt: skip
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "running", record
    status = run_cli("sweep", str(sweep), "--out", str(out), "--status")
    assert "0/1 done (1 lost)" in status.stdout, status.stdout + status.stderr
    rerun = run_cli("sweep", str(sweep), "--out", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert "ran 1" in rerun.stdout
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def _wait_for_run_dir(sweep_dir: Path, proc: Any) -> list[Path]:
    assert wait_until(lambda: list(sweep_dir.glob("*/run.json")) or proc.poll() is not None, 120)
    return [p.parent for p in sweep_dir.glob("*/run.json")]


def test_slurm_options_reach_the_sbatch_script(tmp_path: Path) -> None:
    base = write_config(tmp_path / "base.yaml", workers=1, sgd={"steps": 100})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"name": "s", "base": base.name,
                                     "grid": {"sgd.step_size": [0.01, 0.02]}}))  # fmt: skip
    out = tmp_path / "out"
    done = run_cli(
        "sweep", str(sweep), "--out", str(out), "--slurm", "--dry-run",
        "--partition", "short-q", "--mem", "3G", "--signal-s", "75", "--time", "00:20:00",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    script = (out / "s" / "sweep.sbatch").read_text()
    lines = set(script.splitlines())
    assert "#SBATCH --partition=short-q" in lines, script
    assert "#SBATCH --mem=3G" in lines, script
    assert "#SBATCH --signal=B:USR1@75" in lines or "#SBATCH --signal=USR1@75" in lines, script
    assert "#SBATCH --time=00:20:00" in lines, script
    # Without the options, no such lines: they come from the command line, not a default.
    plain = run_cli("sweep", str(sweep), "--out", str(tmp_path / "plain"), "--slurm", "--dry-run")
    assert plain.returncode == 0, plain.stderr
    text = (tmp_path / "plain" / "s" / "sweep.sbatch").read_text()
    assert "--partition" not in text and "--mem" not in text and "@75" not in text
