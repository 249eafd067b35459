"""Backends: how a run's ranks are placed on processes, behind one protocol, in one registry.

A backend takes the team (problem, plan, shared state, settings), where to start and the
collector, runs every trial and returns the outcome with each rank's timings. What the rest
of the code needs to know about a backend before it runs (is the data put in shared memory,
does every worker get a process of its own) is in its ``BackendInfo``; nothing else compares
backend names. This module is light (no numpy): the config schema reads ``names()``.

Adding a backend: write a module with a ``BACKEND`` object that has ``run``, and register
its ``BackendInfo`` below (the module is imported only when a run uses it).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from parsgd.engine.coordinator import Sink
    from parsgd.engine.loop import Outcome, Position
    from parsgd.engine.team import Team


class Backend(Protocol):
    def run(
        self, team: Team, start: Position, sink: Sink
    ) -> tuple[Outcome, list[dict[str, float]]]:
        """Run every trial from ``start``; rank 0's rows and checkpoints go to ``sink``."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    module: str  # holds ``BACKEND``, imported when a run starts
    shared_memory: bool  # the data and team state must live in shared memory
    process_per_worker: bool  # every worker is a process of its own on this machine
    summary: str
    # One rank per node: the set-up is checked first and the ranks join before the run
    # directory is claimed (``check_setup``, ``join``, ``follow`` on its BACKEND).
    across_nodes: bool = False


_REGISTRY: dict[str, BackendInfo] = {}


def register(info: BackendInfo) -> None:
    """Make a backend selectable as ``backend: <name>``."""
    _REGISTRY[info.name] = info


register(
    BackendInfo(
        "processes",
        "parsgd.engine.coordinator",
        shared_memory=True,
        process_per_worker=True,
        summary="one process per worker, meeting in shared memory",
    )
)
register(
    BackendInfo(
        "serial",
        "parsgd.engine.serial",
        shared_memory=False,
        process_per_worker=False,
        summary="every worker in this process, rank by rank (the reference)",
    )
)


register(
    BackendInfo(
        "mpi",
        "parsgd.engine.backends.mpi_loop",
        shared_memory=True,
        process_per_worker=True,
        summary="one MPI rank per node (mpirun or srun), meetings across nodes",
        across_nodes=True,
    )
)


def names() -> tuple[str, ...]:
    """The registered backends' names, default (processes) first."""
    return tuple(_REGISTRY)


def info(name: str) -> BackendInfo:
    """What is known about backend ``name`` (validated by the config schema)."""
    return _REGISTRY[name]


def auto_nodes(name: str) -> int:
    """What ``nodes: auto`` resolves to under backend ``name``: for a backend across nodes,
    the world size its launcher gives this process (one rank per node); else, or outside a
    launcher, 1: this machine (the set-up check then says what is missing)."""
    if not info(name).across_nodes:
        return 1
    from parsgd.engine.backends.mpi_setup import launched  # light: reads the environment

    launch = launched()
    return 1 if launch is None else launch.size


def load(name: str) -> Backend:
    """The backend object itself (imports its module)."""
    backend: Backend = import_module(_REGISTRY[name].module).BACKEND
    return backend
