"""A real two-node SLURM cluster on localhost, in a temporary directory, for the tests.

Two emulated nodes, ``n1`` and ``n2``: two slurmd (``slurmd -N n1``, ``-N n2``) on distinct
ports, each with its own spool directory, pid file, log and TmpFS (``%n`` in slurm.conf).
munged, slurmctld and the slurmd run as root from Debian's ``munge`` and ``slurm-wlm`` packages
with every path (config, state, spool, logs, pid files, the munge socket) under ``root``;
``SLURM_CONF`` points the clients (sbatch, squeue, scontrol) at it. The daemons fork into
the background (so they are not children of the test process) and are stopped by the pids
in their pid files. What makes this work here is written up in docs/DESIGN.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

NODES = ("n1", "n2")
_DAEMONS = (*(f"slurmd-{node}" for node in NODES), "slurmctld", "munged")
_NEEDED = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def unavailable_reason() -> str | None:
    """Why a local SLURM cluster cannot run here, or None if it can."""
    missing = [tool for tool in _NEEDED if shutil.which(tool) is None]
    if missing:
        return (
            f"SLURM is not installed ({', '.join(missing)} not found); "
            "`apt-get install slurm-wlm munge` as root (.ci/run does)"
        )
    if os.geteuid() != 0:
        return "the local SLURM cluster runs its daemons as root; these tests are not root"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalSlurm:
    """Start with ``start()``, stop with ``stop()``; ``env`` is what clients need."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        """``cpus`` per node (the nodes share this machine's cores)."""
        self.root, self.cpus = root, cpus
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._pids: dict[str, int] = {}

    def _write_config(self) -> None:
        munge = self.root / "munge"
        munge.mkdir(mode=0o755)
        os.chmod(munge, 0o755)
        for sub in ("state", "spool", "log", "run", "tmp"):
            (self.root / sub).mkdir()
        for node in NODES:
            (self.root / "spool" / node).mkdir()
            (self.root / "tmp" / node).mkdir()
        ctld_port, *slurmd_ports = _free_ports(1 + len(NODES))
        r = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=parsgdtest",
                    "SlurmctldHost=localhost",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={ctld_port}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    # cred_expire: also how long a requeued job waits (default 120 s).
                    f"AuthInfo=socket={munge}/munge.socket.2,cred_expire=10",
                    f"StateSaveLocation={r}/state",
                    f"SlurmdSpoolDir={r}/spool/%n",
                    f"SlurmctldPidFile={r}/run/slurmctld.pid",
                    f"SlurmdPidFile={r}/run/slurmd-%n.pid",
                    f"SlurmctldLogFile={r}/log/slurmctld.log",
                    f"SlurmdLogFile={r}/log/slurmd-%n.log",
                    f"TmpFS={r}/tmp/%n",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    "MailProg=/bin/true",
                    "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
                    "ReturnToService=2",
                    "KillWait=5",
                    *(
                        f"NodeName={node} NodeHostname=localhost NodeAddr=127.0.0.1 "
                        f"Port={port} CPUs={self.cpus} State=UNKNOWN"
                        for node, port in zip(NODES, slurmd_ports, strict=True)
                    ),
                    f"PartitionName=debug Nodes={','.join(NODES)} Default=YES "
                    "MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def start(self, timeout_s: float = 30.0) -> None:
        self._write_config()
        r = self.root
        key = r / "munge" / "munge.key"
        self._run(["mungekey", "--create", f"--keyfile={key}"])
        os.chmod(key, 0o400)
        self._run(
            [
                "munged",
                "--force",
                f"--socket={r}/munge/munge.socket.2",
                f"--key-file={key}",
                f"--pid-file={r}/run/munged.pid",
                f"--log-file={r}/log/munged.log",
                f"--seed-file={r}/munge/munged.seed",
            ]
        )
        self._pids["munged"] = self._read_pid("munged")
        self._run(["slurmctld", "-f", str(self.conf), "-c", "-i"])
        self._pids["slurmctld"] = self._read_pid("slurmctld")
        for node in NODES:
            self._run(["slurmd", "-f", str(self.conf), "-N", node])
            self._pids[f"slurmd-{node}"] = self._read_pid(f"slurmd-{node}")
        self._wait_idle(timeout_s)

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}\n{self.logs()}")

    def _read_pid(self, daemon: str, timeout_s: float = 10.0) -> int:
        path = self.root / "run" / f"{daemon}.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(path.read_text().strip())
            time.sleep(0.05)
        raise RuntimeError(f"{daemon} wrote no pid file\n{self.logs()}")

    def _wait_idle(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        state = ""
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env
            )
            state = done.stdout.strip()
            states = state.split()
            up = len(states) == len(NODES) and all(s.startswith("idle") for s in states)
            if done.returncode == 0 and up:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the nodes did not come up (states {state!r})\n{self.logs()}")

    def squeue(self, job_id: str) -> list[str]:
        done = subprocess.run(
            ["squeue", "-h", "-r", "-j", job_id, "-o", "%i %T"],
            capture_output=True,
            text=True,
            env=self.env,
        )
        return [line for line in done.stdout.splitlines() if line.strip()]

    def logs(self) -> str:
        texts = []
        for path in sorted((self.root / "log").glob("*.log")):
            texts.append(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join(texts)

    def _step_daemons(self) -> list[int]:
        """Pids of this cluster's slurmstepd processes (they run in its directory)."""
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                ours = os.readlink(proc / "cwd").startswith(str(self.root))
                if ours and (proc / "comm").read_text().strip() == "slurmstepd":
                    pids.append(int(proc.name))
        pids = [pid for pid in pids if _alive(pid)]
        return pids

    def stop(self) -> None:
        """SIGTERM each daemon this cluster started, by pid; SIGKILL any that lingers.

        A job's slurmstepd outlives the job in squeue by a moment; stopping slurmd under it
        leaves it retrying for minutes, so wait for it first (and kill it by pid if stuck).
        """
        deadline = time.monotonic() + 10
        while self._step_daemons() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self._step_daemons():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for daemon in _DAEMONS:
            pid = self._pids.pop(daemon, None)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return status.read_text().split(") ")[-1][:1] != "Z"
    return False
