"""What a run's start-up does not do: import scipy.linalg for numba, or scan numba's registries
with the cyclic collector (parsgd/numba_start.py), or import psutil."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, write_config


def test_a_run_never_imports_scipy_linalg(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", trials=1)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "parsgd", "run", str(config),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "numba.np.arraymath" in imported  # the registries did load, in this process
    assert "scipy.linalg" not in imported
    assert "psutil" not in imported  # registry._available_memory reads /proc/meminfo


def test_available_memory_is_what_psutil_says() -> None:
    import psutil

    from parsgd.problems.registry import _available_memory

    ours, theirs = _available_memory(), psutil.virtual_memory().available
    assert abs(ours - theirs) < 0.05 * theirs  # both read MemAvailable, a moment apart


def test_numba_keeps_blas_for_what_compiles_later() -> None:
    """The probe answers "no BLAS" only while arraymath imports; np.dot still compiles."""
    code = (
        "import numpy as np\n"
        "import numba.np.linalg as linalg\n"
        "probe = linalg.ensure_blas\n"
        "from parsgd.numba_start import start_numba\n"
        "start_numba()\n"
        "import numba.np.arraymath as arraymath\n"
        "assert linalg.ensure_blas is probe and arraymath.ensure_blas is probe\n"
        "assert not arraymath._HAVE_BLAS\n"
        "from numba import njit\n"
        "a = np.arange(6.0).reshape(2, 3)\n"
        "assert np.array_equal(njit(lambda x, y: np.dot(x, y))(a, a.T), a @ a.T)\n"
        "import sys\n"
        "assert 'scipy.linalg' in sys.modules  # np.dot's own BLAS check brought it in\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
