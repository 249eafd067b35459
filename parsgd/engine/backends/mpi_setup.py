"""Before MPI: is this process under an MPI launcher, with how many ranks; then MPI_Init.

Order matters (see DESIGN.md): a rank publishes its node's data and forks its workers
*first*, and only then initialises MPI, because forking after MPI_Init is unsafe with several
transports (Open MPI asks users not to; UCX-registered memory is missing in the child).
So nothing here imports ``mpi4py.MPI`` except ``init_mpi``, which sets
``mpi4py.rc.initialize = False`` and calls MPI_Init itself; workers never reach it.

The launcher is recognised by the environment it gives its ranks, which is readable before
MPI_Init: MPICH's hydra (``PMI_RANK``/``PMI_SIZE``), srun with pmi2 (the same names), srun
with PMIx or Open MPI (``PMIX_RANK`` with ``SLURM_NTASKS``, ``OMPI_COMM_WORLD_SIZE``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from parsgd.errors import ConfigError

# (variable holding the rank, variable holding the world size), in order of preference.
_LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMIX_RANK", "SLURM_NTASKS"),
    ("PMIX_RANK", "PMIX_SIZE"),
)


@dataclass(frozen=True)
class Launch:
    """What the launcher says about this process, before MPI_Init."""

    rank: int
    size: int


def launched() -> Launch | None:
    """This process's rank and the world size, if an MPI launcher started it; else None."""
    for rank_var, size_var in _LAUNCHER_VARIABLES:
        rank, size = os.environ.get(rank_var, ""), os.environ.get(size_var, "")
        if rank.isdigit() and size.isdigit():
            return Launch(int(rank), int(size))
    return None


def check_mpi_setup(nodes: int) -> Launch:
    """Refuse a bad set-up with one line (exit 2), before anything starts; else the launch.

    ``nodes`` is the resolved config's (``nodes: auto`` has become the world size already,
    ``backends.auto_nodes``): it must equal the world size.
    """
    try:
        import mpi4py  # noqa: F401 -- the package only: MPI itself starts in init_mpi
    except ImportError:
        raise ConfigError(
            "backend: mpi needs mpi4py: pip install 'parsgd[mpi]' (mpi4py and MPICH's wheels)"
        ) from None
    launch = launched()
    if launch is None:
        raise ConfigError(
            "backend: mpi runs under an MPI launcher, one rank per node: "
            "mpiexec -n N parsgd run ... or srun --mpi=pmi2 -N N --ntasks-per-node=1 parsgd run ..."
        )
    if nodes != launch.size:
        raise ConfigError(
            f"nodes is {nodes} but the MPI world has {launch.size} ranks; with backend: mpi "
            "there is one rank per node (set nodes: auto, or launch nodes ranks)"
        )
    return launch


NETMOD_VARIABLE = "MPIR_CVAR_CH4_NETMOD"


def pmi1_safe_netmod(library_version: str, environ: Mapping[str, str]) -> str | None:
    """The MPICH network module to choose before MPI_Init under ``srun --mpi=pmi2``, or None.

    Slurm's pmi2 plugin (22.05 and earlier) reads each PMI-1 request with a single read() of
    at most 1024 bytes, while MPICH cuts a long value into segments of up to 1022 hex
    characters, so a segment's request line (command and key included) is longer than that.
    UCX, MPICH's default network module, publishes a worker address listing every transport
    and interface of the host: on a host with a few network interfaces it takes several
    segments, the step daemon misparses them and MPI_Init hangs until the job's time limit.
    MPICH's OFI module publishes one endpoint, tens of bytes. So under that launcher, with
    an MPICH built with OFI, and unless the user chose a network module, choose OFI.
    """
    if environ.get("SLURM_MPI_TYPE") != "pmi2" or "PMI_FD" not in environ:
        return None  # not Slurm's PMI server (mpiexec's hydra reads whole lines)
    if NETMOD_VARIABLE in environ:
        return None
    device = next(
        (line for line in library_version.splitlines() if line.startswith("MPICH Device:")), ""
    )
    return "ofi" if "ofi" in device.split(":", 1)[-1] else None


def init_mpi() -> Any:
    """MPI_Init now (after the fork), returning ``mpi4py.MPI``; errors raise, never abort."""
    import mpi4py

    mpi4py.rc.initialize = False
    mpi4py.rc.finalize = False
    mpi4py.rc.threads = False
    from mpi4py import MPI

    if not MPI.Is_initialized():
        netmod = pmi1_safe_netmod(MPI.Get_library_version(), os.environ)
        if netmod is not None:
            os.environ[NETMOD_VARIABLE] = netmod  # MPICH reads its CVARs in MPI_Init
        MPI.Init()
    MPI.COMM_WORLD.Set_errhandler(MPI.ERRORS_RETURN)
    return MPI
