"""The error hierarchy: every failure a user can cause or meet has one class here."""

from __future__ import annotations


class ParsgdError(Exception):
    """Base class of every error parsgd raises on purpose."""

    exit_status = 1


class ConfigError(ParsgdError):
    """A config, a sweep file or a command-line override is invalid (exit status 2)."""

    exit_status = 2


class DataError(ParsgdError):
    """A data set cannot be built or loaded (exit status 2)."""

    exit_status = 2


class WorkerError(ParsgdError):
    """A worker raised; ``remote_traceback`` holds the worker's own traceback."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class WorkerCrashed(ParsgdError):
    """A worker process died without reporting (a signal, ``os._exit``, out of memory)."""
