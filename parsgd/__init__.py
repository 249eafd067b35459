"""parsgd: parallel SGD with model averaging on real processes: how often should workers average?"""

from parsgd.config import load_config
from parsgd.engine.runner import RunResult, run_experiment
from parsgd.errors import ConfigError, DataError, ParsgdError, WorkerCrashed, WorkerError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ParsgdError",
    "RunResult",
    "WorkerCrashed",
    "WorkerError",
    "__version__",
    "load_config",
    "run_experiment",
]
