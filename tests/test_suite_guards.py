"""The suite's own guards: required real parts fail instead of skipping, and the leak check
sees a run's processes even after they were reparented away from pytest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
from conftest import REQUIRE_ENV, ROOT, _listed_processes, wait_until

# Two of test_slurm.py's tests on the cluster fixture, where the skip or failure is decided:
# the whole file would add its other tests' runs (tens of seconds), which prove nothing here.
SLURM_TESTS = (
    "tests/test_slurm.py::test_sweep_as_job_array_matches_local_run",
    "tests/test_slurm.py::test_srun_on_two_nodes_equals_serial",
)


def _pytest_without_slurm(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess[str]:
    """SLURM_TESTS by ``pytest`` in a subprocess whose PATH holds no SLURM tool."""
    tmp_path.mkdir()
    env = {k: v for k, v in os.environ.items() if k != REQUIRE_ENV}
    env["PATH"] = str(Path(sys.executable).parent)  # the venv's bin: python, no sbatch
    if require is not None:
        env[REQUIRE_ENV] = require
    return subprocess.run(
        [sys.executable, "-m", "pytest", *SLURM_TESTS, "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "basetemp")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip


def test_required_slurm_fails_instead_of_skipping_when_absent(tmp_path: Path) -> None:
    required = _pytest_without_slurm(tmp_path / "required", "mpi, slurm")
    assert required.returncode == 1, required.stdout[-3000:]
    assert "slurm is required (PARSGD_REQUIRE) but unavailable: SLURM is not installed" in (
        required.stdout
    )
    summary = required.stdout.splitlines()[-1]
    assert "2 errors" in summary and " skipped" not in summary, required.stdout[-3000:]

    optional = _pytest_without_slurm(tmp_path / "optional", None)
    assert optional.returncode == 0, optional.stdout[-3000:]
    summary = optional.stdout.splitlines()[-1]
    assert "2 skipped" in summary and "failed" not in summary and "error" not in summary
    # -rs (pyproject's addopts) lists each skip with its reason.
    assert "SKIPPED" in optional.stdout and "slurm: SLURM is not installed" in optional.stdout


def test_leak_check_sees_a_listed_process_that_pytest_no_longer_parents(tmp_path: Path) -> None:
    # A shell that starts a sleeper and exits: the sleeper is reparented away from pytest,
    # as a CLI run's workers are when their coordinator exits. Its command line names the
    # test's directory, as a CLI run's names its --out.
    shell = subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'import time; time.sleep(300)' '{tmp_path}' "
         ">/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    orphan = psutil.Process(int(shell.stdout))
    try:
        assert orphan.pid not in [c.pid for c in psutil.Process().children(recursive=True)]
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "run.json").write_text(json.dumps({"pids": [orphan.pid], "status": "x"}))
        assert [p.pid for p in _listed_processes([tmp_path])] == [orphan.pid]
        # A listed pid whose process names another run's directory is a recycled pid.
        assert _listed_processes([run_dir]) == []
    finally:
        orphan.kill()
    assert wait_until(lambda: not _listed_processes([tmp_path]), 10)  # gone: nothing reported
