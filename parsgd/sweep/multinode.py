"""A multi-node array task: each of its runs is one ``srun --mpi=<plugin>`` job step.

The batch shell (on the allocation's first node) runs ``parsgd sweep --array-task``, which
for a multi-node task claims each point as a local sweep would, skips completed ones, and
starts ``srun --mpi=P --nodes=N --ntasks-per-node=1 --cpus-per-task=W parsgd run <point>``:
one MPI rank per node, each forking its node's workers (``backend: mpi``). The point's
resolved config is written to ``slurm/points/<run id>.yaml`` so the step runs exactly it.

A stop request (SLURM's time-limit USR1, scancel's TERM) reaching the batch process is passed
to the running srun as SIGUSR1, which srun forwards to every rank: the run checkpoints at its
next global meeting and ends ``interrupted``; the task then requeues itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from parsgd.engine.rundir import write_atomic
from parsgd.sweep.spec import Point
from parsgd.sweep.state import FINISHED, RunClaim, RunState, run_state, sweep_states, update_index

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def step_command(frozen: dict[str, Any], config_path: Path, sweep_dir: Path) -> list[str]:
    """The srun command line of one run: one rank per node, ``cpus_per_task`` CPUs each."""
    return [
        "srun",
        f"--mpi={frozen['mpi']}",
        f"--nodes={frozen['nodes']}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={frozen['cpus_per_task']}",
        # Not --kill-on-bad-exit: when a rank dies, rank 0 must live to record which (the
        # heartbeats tell it within seconds) before every rank ends.
        sys.executable,
        "-m",
        "parsgd",
        "run",
        str(config_path),
        "--out",
        str(sweep_dir),
    ]


class MultiNodeTask:
    """Runs a task's points one after another, each as its own srun job step."""

    def __init__(
        self, sweep_dir: Path, keys: list[str], frozen: dict[str, Any], force: bool
    ) -> None:
        self.sweep_dir, self.keys, self.frozen, self.force = sweep_dir, keys, frozen, force
        self.stopped_by: str | None = None
        self._step: subprocess.Popen[bytes] | None = None

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopped_by is None:
            self.stopped_by = signal.Signals(signum).name
        if self._step is not None and self._step.poll() is None:
            self._step.send_signal(signal.SIGUSR1)

    def run(self, mine: list[Point], planned: list[Point]) -> list[RunState]:
        """Run what is not done; rewrite index.csv after each run; every point's state after."""
        previous = {sig: signal.signal(sig, self._signal) for sig in _STOP_SIGNALS}
        try:
            for point in mine:
                if self.stopped_by is not None:
                    break
                self._run_point(point)
                update_index(self.sweep_dir, self.keys, planned)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return sweep_states(self.sweep_dir, mine)

    def _run_point(self, point: Point) -> None:
        claim = RunClaim(self.sweep_dir / point.run_id)
        if not claim.acquire():
            print(f"busy {point.run_id}: another task is running it", flush=True)
            return
        try:
            if not self.force and run_state(self.sweep_dir, point).status in FINISHED:
                return
            config_path = self.sweep_dir / "slurm" / "points" / f"{point.run_id}.yaml"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(
                config_path, yaml.safe_dump(point.spec.to_dict(), sort_keys=False).encode()
            )
            command = step_command(self.frozen, config_path, self.sweep_dir)
            if not self.force:
                command.append("--resume")
            print("step: " + " ".join(command), flush=True)
            self._step = subprocess.Popen(command)
            self._step.wait()
            self._step = None
        finally:
            claim.release()
