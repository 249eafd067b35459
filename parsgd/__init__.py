"""parsgd: parallel SGD with model averaging on real processes: how often should workers average?

The public API is imported on first use (PEP 562), so ``import parsgd`` and ``parsgd --help``
do not pay for numpy, numba and the engine.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from parsgd import jitcache
from parsgd.errors import ConfigError, DataError, ParsgdError, WorkerCrashed, WorkerError
from parsgd.version import __version__

jitcache.refresh()  # before any compiled function loads its cache (see jitcache)

if TYPE_CHECKING:
    from parsgd.analysis.export import load
    from parsgd.config.load import load_config
    from parsgd.config.spec import RunSpec
    from parsgd.engine.runner import RunResult, run_experiment

_LAZY = {
    "load": "parsgd.analysis.export",
    "load_config": "parsgd.config.load",
    "RunSpec": "parsgd.config.spec",
    "RunResult": "parsgd.engine.runner",
    "run_experiment": "parsgd.engine.runner",
}

__all__ = [
    "ConfigError",
    "DataError",
    "ParsgdError",
    "RunResult",
    "RunSpec",
    "WorkerCrashed",
    "WorkerError",
    "__version__",
    "load",
    "load_config",
    "run_experiment",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'parsgd' has no attribute {name!r}")
