"""The MPI transport under a real ``mpiexec`` (MPICH's wheels, or a system MPI).

``tests/mpi_link_prog.py`` is the program each rank runs. The tests skip, saying why, where
mpi4py or mpiexec is missing (``unavailable_reason``; ``.ci/run`` installs ``parsgd[mpi]``).
"""

from __future__ import annotations

import array
import contextlib
import csv
import fcntl
import importlib.util
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, run_cli, skip_unless_available, wait_until, write_config

from parsgd.engine.backends import auto_nodes
from parsgd.engine.backends.mpi_link import HYDRA_TOPOLOGY
from parsgd.engine.backends.mpi_setup import check_mpi_setup, launched
from parsgd.engine.logs import WorkerLogs
from parsgd.errors import ConfigError

PROGRAM = Path(__file__).parent / "mpi_link_prog.py"
_LAUNCH_VARIABLES = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                     "PMIX_RANK", "PMIX_SIZE", "SLURM_NTASKS")  # fmt: skip


def mpiexec() -> str | None:
    here = str(Path(sys.executable).parent)
    return shutil.which("mpiexec", path=here) or shutil.which("mpiexec")


def unavailable_reason() -> str | None:
    """Why these tests cannot run here, or None if they can."""
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed: pip install 'parsgd[mpi]'"
    if mpiexec() is None:
        return "no mpiexec: pip install 'parsgd[mpi]' (MPICH's wheels bring one)"
    return None


def _mpi_segments() -> set[str]:
    """MPI segments in /dev/shm that no live process maps: left behind (a live job's, such
    as another test's running at the same time, is not counted)."""
    mapped = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        try:
            mapped |= {line.split()[-1] for line in maps.read_text().splitlines()}
        except OSError:
            continue
    return {str(p) for p in Path("/dev/shm").glob("mpich_shm_*")} - mapped


def _hydra_files() -> set[str]:
    """MPICH hydra's topology files in the temp directory that no live process holds open:
    left behind (a live job's proxy holds its own file open until it exits)."""
    files = {str(p) for p in Path(tempfile.gettempdir()).glob(f"{HYDRA_TOPOLOGY}*")}
    if not files:
        return files
    held = set()
    for fds in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            held |= {os.readlink(fd) for fd in fds.iterdir()}
    return files - held


@pytest.fixture
def mpi() -> Iterator[None]:
    """Skip (saying why) where MPI cannot run; the one place that decides it. After the
    test: no MPI shared-memory segment and no hydra topology file that appeared during it
    is left behind (the transport unlinks MPICH's segment and hydra's file)."""
    skip_unless_available("mpi", unavailable_reason())  # PARSGD_REQUIRE=mpi: a failure
    before, files_before = _mpi_segments(), _hydra_files()
    yield
    assert wait_until(lambda: not _mpi_segments() - before, 10), _mpi_segments() - before
    assert wait_until(lambda: not _hydra_files() - files_before, 10), _hydra_files() - files_before


def run_ranks(ranks: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [str(mpiexec()), "-n", str(ranks), sys.executable, str(PROGRAM), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _left_running(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z":
            alive.append(pid)
    return alive


@pytest.mark.usefixtures("mpi")
@pytest.mark.parametrize("ranks", [2, 3])
def test_gathered_rows_average_to_the_serial_fixed_order_bits(ranks: int) -> None:
    """Every rank gets every rank's rows, and their average has the bits of rank-order
    summation (3 ranks: order matters, checked)."""
    done = run_ranks(ranks, "sums")
    assert done.returncode == 0, done.stdout + done.stderr
    found = sorted(re.findall(r"OK rank (\d+) of (\d+) ", done.stdout))
    assert found == [(str(r), str(ranks)) for r in range(ranks)], done.stdout


@pytest.mark.usefixtures("mpi")
def test_a_stopped_rank_is_named_and_the_job_ends() -> None:
    """Rank 1 SIGSTOPs itself: rank 0's heartbeats time out, it names rank 1 and aborts."""
    tic = time.monotonic()
    done = run_ranks(2, "stopped")
    elapsed = time.monotonic() - tic
    assert done.returncode != 0
    assert re.search(r"LOST rank 0: node 1 \(host \S+, rank 1\) lost: no heartbeat", done.stdout)
    pids = [int(p) for p in re.findall(r"READY rank \d pid (\d+)", done.stdout)]
    assert len(pids) == 2
    assert wait_until(lambda: not _left_running(pids), 10), _left_running(pids)
    print(f"stopped rank: job over {elapsed:.1f} s after start (heartbeat timeout 2 s)")


@pytest.mark.usefixtures("mpi")
def test_a_killed_rank_ends_the_job_with_nothing_left() -> None:
    done = run_ranks(2, "killed")
    assert done.returncode != 0
    pids = [int(p) for p in re.findall(r"READY rank \d pid (\d+)", done.stdout)]
    assert len(pids) == 2, done.stdout + done.stderr
    assert wait_until(lambda: not _left_running(pids), 10), _left_running(pids)


def test_launcher_is_recognised_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert launched() is None
    with pytest.raises(ConfigError, match="runs under an MPI launcher, one rank per node"):
        check_mpi_setup(1)
    assert auto_nodes("mpi") == 1 and auto_nodes("processes") == 1
    monkeypatch.setenv("PMI_RANK", "1")
    monkeypatch.setenv("PMI_SIZE", "2")
    launch = launched()
    assert launch is not None and (launch.rank, launch.size) == (1, 2)
    assert auto_nodes("mpi") == 2 and auto_nodes("processes") == 1  # nodes: auto
    assert check_mpi_setup(2).rank == 1
    with pytest.raises(ConfigError, match="nodes is 3 but the MPI world has 2 ranks"):
        check_mpi_setup(3)


def test_missing_mpi4py_is_one_line() -> None:
    code = (
        "import sys; sys.modules['mpi4py'] = None\n"
        "from parsgd.engine.backends.mpi_setup import check_mpi_setup\n"
        "check_mpi_setup('auto')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode != 0
    assert "ConfigError: backend: mpi needs mpi4py: pip install 'parsgd[mpi]'" in done.stderr


def test_importing_the_transport_does_not_initialise_mpi() -> None:
    """Workers are forked before MPI_Init: importing the backend must not start MPI."""
    code = (
        "import sys, parsgd.engine.backends.mpi_link, parsgd.engine.backends.mpi_setup\n"
        "print('mpi4py.MPI' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_the_node_log_relay_ends_when_a_worker_dies_mid_record() -> None:
    """A node's rank relays its workers' records through ``logs.WorkerLogs``. A worker
    SIGKILLed while it writes a record (blocked: the pipe is full) leaves half a record in
    the pipe; once the rank has let go of its writing end (``forked``), the dead writer
    gives EOF, so the relay ends instead of waiting for the rest: the records before are
    delivered, and nothing hangs."""
    logger = logging.getLogger("parsgd.test_relay")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    delivered: list[str] = []
    first_in = threading.Event()
    go_on = threading.Event()

    def deliver(record: logging.LogRecord) -> None:
        delivered.append(record.getMessage()[:20])
        first_in.set()
        go_on.wait(60)  # the relay reads nothing more until the writer is dead

    relay = WorkerLogs(logger, [], deliver)

    def worker() -> None:
        logger.info("before the big one")
        logger.info("x" * 4_000_000)  # far more than a pipe holds: blocks mid-record
        os._exit(0)

    proc = multiprocessing.get_context("fork").Process(target=worker, daemon=True)
    try:
        proc.start()
        relay.forked()
        reader = relay._reader.fileno()
        queued = array.array("i", [0])

        def second_begun() -> bool:  # bytes of it in the pipe, which holds a fraction of it
            fcntl.ioctl(reader, termios.FIONREAD, queued)
            return queued[0] > 0

        assert first_in.wait(60) and wait_until(second_begun, 60), queued[0]
        assert proc.is_alive() and queued[0] < 4_000_000  # still in its write
        os.kill(proc.pid or 0, signal.SIGKILL)
        proc.join(60)
        go_on.set()
        assert relay.ended(60), "the relay waits on a dead worker's half record"
        assert delivered == ["before the big one"]
    finally:
        go_on.set()
        proc.kill()
        relay.close()


# -- backend: mpi through the command line ----------------------------------------------------

TIME_COLUMNS = ("wall_s", "compute_s", "sync_wait_s")


def _trace(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "trace.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if k not in TIME_COLUMNS}
            for row in csv.DictReader(handle)
        ]


def _mpi_cli(
    ranks: int, *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(mpiexec()), "-n", str(ranks), sys.executable, "-m", "parsgd", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


SCHEDULES = {
    "flat": {"every": 5},
    "hierarchical": {"every": 5, "global_every": 20},
    "global at the end": {"every": 1, "global_every": "end"},
}


@pytest.mark.usefixtures("mpi")
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_mpi_trace_equals_serial_with_nodes(tmp_path: Path, schedule: str) -> None:
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=2, averaging=SCHEDULES[schedule],
        eval={"every": 20},
    )  # fmt: skip
    serial = run_cli("run", str(config), "--set", "backend=serial", "--out", str(tmp_path / "s"))
    assert serial.returncode == 0, serial.stderr
    done = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stdout + done.stderr
    ours, theirs = _trace(tmp_path / "m" / "t"), _trace(tmp_path / "s" / "t")
    assert len(ours) == len(theirs) > 10
    assert ours == theirs
    record = json.loads((tmp_path / "m" / "t" / "run.json").read_text())
    assert record["status"] == "completed" and record["backend"] == "mpi"
    assert [(n["node"], n["rank"]) for n in record["mpi_ranks"]] == [(0, 0), (1, 1)]
    assert all(n["host"] and n["pid"] > 0 for n in record["mpi_ranks"])
    # Each node's rank forked its node's workers: processes of their own, two per node.
    workers = [n["worker_pids"] for n in record["mpi_ranks"]]
    assert [len(pids) for pids in workers] == [2, 2]
    assert len({n["pid"] for n in record["mpi_ranks"]} | {p for ps in workers for p in ps}) == 6
    log = (tmp_path / "m" / "t" / "log.txt").read_text()
    for node in (0, 1):  # every rank's lines reach log.txt, tagged by node
        assert re.search(rf" node{node} parsgd.mpi INFO node {node}: rank {node} of 2 ", log), log
    _assert_worker_lines(log, record, trials=2)
    if schedule != "flat":  # power: the levels change the numbers
        flat = _trace_of_flat(tmp_path, config)
        assert [r["loss"] for r in flat] != [r["loss"] for r in ours]


def _assert_worker_lines(log: str, record: dict[str, Any], trials: int) -> None:
    """Every worker of every node has its own lines in log.txt, in the processes backend's
    format, tagged ``node<n>/worker-<r>``: started (with its pid, from run.json) and each
    trial finished (``trials`` of them)."""
    for node in record["mpi_ranks"]:
        pids = ", ".join(str(pid) for pid in node["worker_pids"])  # the rank's line as it forked
        started = (
            rf" node{node['node']} parsgd\.coordinator INFO started 2 workers: pids \[{pids}\]$"
        )
        assert re.search(started, log, re.M), log
        for index, pid in enumerate(node["worker_pids"]):
            rank = 2 * node["node"] + index
            tag = rf"^\S+ \S+ node{node['node']}/worker-{rank} parsgd\.worker INFO "
            assert re.search(rf"{tag}worker {rank} started \(pid {pid}\)$", log, re.M), log
            for trial in range(trials):
                assert re.search(rf"{tag}worker {rank} finished trial {trial}$", log, re.M), log


@pytest.mark.usefixtures("mpi")
def test_a_cold_numba_cache_does_not_lose_a_peer(tmp_path: Path) -> None:
    """With an empty numba cache every rank compiles its kernels (a cold run took 33 s
    here against 7 s warm, on a shared machine) -- before MPI_Init, whose start-up barrier
    holds the ranks until the slowest is ready, so no heartbeat is due yet: no peer is
    lost, and the trace is serial's. Each rank logs its longest silence (printed)."""
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=2, averaging={"every": 5, "global_every": 20}
    )
    done = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--out", str(tmp_path / "m"),
                    env={"NUMBA_CACHE_DIR": str(cache)})  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(cache.rglob("*.nbi")), "the run did not compile into the fresh cache"
    serial = run_cli("run", str(config), "--set", "backend=serial", "--out", str(tmp_path / "s"))
    assert serial.returncode == 0, serial.stderr
    assert _trace(tmp_path / "m" / "t") == _trace(tmp_path / "s" / "t")
    log = (tmp_path / "m" / "t" / "log.txt").read_text()
    silences = re.findall(r"node (\d): longest silence of a peer (\S+) s \(lost after 5 s\)", log)
    assert sorted(node for node, _ in silences) == ["0", "1"], log
    print("cold cache: longest heartbeat silence per node", dict(silences))


def _trace_of_flat(tmp_path: Path, config: Path) -> list[dict[str, str]]:
    out = tmp_path / "flat"
    done = run_cli("run", str(config), "--set", "backend=serial", "--set",
                   "averaging.global_every=null", "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return _trace(out / "t")


def _long_mpi_run(tmp_path: Path) -> tuple[Path, Path, subprocess.Popen[bytes]]:
    """A 2-rank x 2-worker run of 400,000 steps under mpiexec, once it is in its steps: its
    config, its run directory and the mpiexec process."""
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=2, trials=1,
        sgd={"steps": 400_000, "step_size": 0.01},
        averaging={"every": 5, "global_every": 100}, eval={"every": 20_000},
    )  # fmt: skip
    out = tmp_path / "m"
    command = [str(mpiexec()), "-n", "2", sys.executable, "-m", "parsgd", "run", str(config),
               "--set", "backend=mpi", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    trace = out / "t" / "trace.csv"
    if not wait_until(lambda: trace.exists() and len(trace.read_text().splitlines()) >= 3, 120):
        proc.kill()
        proc.wait()
        pytest.fail("the mpi run wrote no trace rows within 120 s")
    return config, out, proc


@pytest.mark.usefixtures("mpi")
def test_stop_on_another_rank_stops_all_and_resume_is_bit_identical(tmp_path: Path) -> None:
    config, out, proc = _long_mpi_run(tmp_path)
    try:
        record = json.loads((out / "t" / "run.json").read_text())
        assert record["status"] == "running"  # still in its steps when signalled
        os.kill(record["pids"][1], signal.SIGTERM)  # the rank of node 1, not rank 0
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
        proc.wait()
    record = json.loads((out / "t" / "run.json").read_text())
    assert record["status"] == "interrupted", record["reason"]
    assert "a stop request on another node" in record["reason"]
    assert (out / "t" / "checkpoint.npz").exists()
    assert len(_trace(out / "t")) < 21  # stopped before the end
    resumed = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--out", str(out),
                       "--resume")  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    serial = run_cli("run", str(config), "--set", "backend=serial", "--out", str(tmp_path / "s"))
    assert serial.returncode == 0, serial.stderr
    assert _trace(out / "t") == _trace(tmp_path / "s" / "t")
    assert json.loads((out / "t" / "run.json").read_text())["resumed_from"] is not None


@pytest.mark.usefixtures("mpi")
@pytest.mark.parametrize("node", [1, 0])
def test_a_killed_worker_on_any_node_fails_the_run_naming_node_worker_and_cause(
    tmp_path: Path, node: int
) -> None:
    """A worker SIGKILLs itself (the fault hook) on node 1 or 0: rank 0 records the run
    failed, naming the node's host and rank, the worker and its pid, and the cause; no rank
    or worker of any node is left running."""
    config = write_config(
        tmp_path / "c.yaml", nodes=2, workers=2, sgd={"steps": 3000},
        averaging={"every": 5, "global_every": 20}, eval={"every": 100},
    )  # fmt: skip
    worker = 2 * node + 1
    done = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--out", str(tmp_path),
                    env={"PARSGD_FAULT": f"{worker}:1200:sigkill"})  # fmt: skip
    assert done.returncode != 0
    record = json.loads((tmp_path / "t" / "run.json").read_text())
    assert record["status"] == "failed", record
    host = record["mpi_ranks"][node]["host"]
    pid = record["mpi_ranks"][node]["worker_pids"][1]
    assert record["reason"].startswith(f"node {node} (host {host}, rank {node}): "), record
    assert f"worker {worker} (pid {pid}) killed by SIGKILL" in record["reason"], record
    rows = _trace(tmp_path / "t")
    assert len(rows) > 0 and all(int(r["step"]) <= 1200 for r in rows)
    # Every worker's start reached log.txt, the dead one's too; its death did not hang the
    # relay of its node's lines (the run ended and rank 0 wrote the log).
    _assert_worker_lines((tmp_path / "t" / "log.txt").read_text(), record, trials=0)
    pids = [n["pid"] for n in record["mpi_ranks"]]
    pids += [p for n in record["mpi_ranks"] for p in n["worker_pids"]]
    assert wait_until(lambda: not _left_running(pids), 10), _left_running(pids)


@pytest.mark.usefixtures("mpi")
def test_a_killed_mpiexec_leaves_no_rank_worker_or_temp_file(tmp_path: Path) -> None:
    """``mpiexec`` SIGKILLed mid-run: hydra then SIGKILLs its proxies, which never remove
    their topology file; the ranks have unlinked it once MPI was up (checked by the ``mpi``
    fixture), and no rank or worker is left."""
    _, out, proc = _long_mpi_run(tmp_path)
    try:
        record = json.loads((out / "t" / "run.json").read_text())
        assert record["status"] == "running"  # still in its steps when killed
        proc.kill()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    pids = [n["pid"] for n in record["mpi_ranks"]]
    pids += [p for n in record["mpi_ranks"] for p in n["worker_pids"]]
    assert wait_until(lambda: not _left_running(pids), 20), _left_running(pids)


@pytest.mark.usefixtures("mpi")
def test_bad_mpi_set_ups_are_one_line_and_exit_2(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", nodes=2, workers=1)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_VARIABLES}
    outside = subprocess.run(
        [sys.executable, "-m", "parsgd", "run", str(config), "--set", "backend=mpi",
         "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    assert outside.returncode == 2
    assert outside.stderr.strip().count("\n") == 0
    assert "backend: mpi runs under an MPI launcher" in outside.stderr
    wrong = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--set", "nodes=3",
                     "--out", str(out))  # fmt: skip
    assert wrong.returncode == 2
    assert "nodes is 3 but the MPI world has 2 ranks" in wrong.stderr
    assert not out.exists()


def test_the_hierarchical_figure_sweep_expands() -> None:
    """configs/paper/7-hierarchical.yaml (the README's figure): six points, both levels."""
    done = run_cli("sweep", str(ROOT / "configs" / "paper" / "7-hierarchical.yaml"), "--list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# sweep hierarchical: 6 points")
    assert "averaging.every=1, averaging.global_every=end" in done.stdout


@pytest.mark.usefixtures("mpi")
def test_nodes_auto_is_the_world_size_under_mpi_and_one_elsewhere(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", nodes="auto", workers=2, averaging={"every": 5})
    done = _mpi_cli(2, "run", str(config), "--set", "backend=mpi", "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stdout + done.stderr
    saved = yaml.safe_load((tmp_path / "m" / "t" / "config.yaml").read_text())
    assert saved["nodes"] == 2  # what ran: the world size
    reference = run_cli("run", str(config), "--set", "backend=serial", "--set", "nodes=2",
                        "--out", str(tmp_path / "s"))  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    assert _trace(tmp_path / "m" / "t") == _trace(tmp_path / "s" / "t")
    local = run_cli("run", str(config), "--dry-run", "--set", "backend=processes")
    assert local.returncode == 0, local.stderr
    assert re.search(r"^nodes: 1$", local.stdout, re.M), local.stdout


@pytest.mark.usefixtures("mpi")
def test_the_bench_times_backend_mpi_on_one_node_against_processes() -> None:
    """``parsgd bench``'s row: both backends run the same config to the end, through the
    command line (``mpiexec -n 1`` for mpi), and the row compares their samples/s."""
    from parsgd.bench.mpi_global import BACKEND_TARGET, _backend_row, backend_rates

    rates = backend_rates(str(mpiexec()), quick=True)
    assert "skipped" not in rates, rates
    assert rates["mpi"] > 0 and rates["processes"] > 0
    row = _backend_row(rates)
    assert row.ratio == rates["mpi"] / rates["processes"] and row.target == BACKEND_TARGET
