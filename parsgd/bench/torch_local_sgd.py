"""The PyTorch way: per-sample local SGD on ``nn.Linear`` with ``PeriodicModelAverager``.

What a researcher writes with torch.distributed: two processes on 127.0.0.1 joined over gloo,
each taking per-sample SGD steps on its own copy of the data (least squares, d = 100) and
averaging parameters every ``period`` steps. Skipped, with the reason, when torch is not
importable. Usage (the benchmark starts both ranks): ``python -m parsgd.bench.torch_local_sgd
RANK PORT STEPS PERIOD``; rank 0 prints one JSON line with the samples/s of both ranks.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
from typing import Any

_D, _N = 100, 100_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(quick: bool, period: int = 1000) -> dict[str, Any]:
    """samples/s of 2 torch ranks, or ``{"skipped": reason}``."""
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "torch not importable (optional; not installed here)"}
    import torch

    steps = 2_000 if quick else 20_000
    port = str(_free_port())
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", __name__, str(rank), port, str(steps), str(period)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [rank.communicate(timeout=600) for rank in ranks]
    if any(rank.returncode != 0 for rank in ranks):
        errors = " | ".join(err.strip().splitlines()[-1] for _, err in outputs if err.strip())
        return {"skipped": f"torch run failed: {errors or 'no message'}"}
    result = json.loads(outputs[0][0].strip().splitlines()[-1])
    result.update(torch=torch.__version__, period=period, steps=steps)
    return result


def _rank(rank: int, port: int, steps: int, period: int) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    generator = torch.Generator().manual_seed(rank)
    X = torch.randn(_N, _D, dtype=torch.float64, generator=generator)
    y = X @ (torch.randn(_D, dtype=torch.float64, generator=generator) / _D**0.5)
    rows = torch.randint(_N, (steps,), generator=generator)
    model = torch.nn.Linear(_D, 1, bias=False).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002)
    averager = PeriodicModelAverager(period=period, warmup_steps=0)
    dist.barrier()
    tic = time.perf_counter()
    for t in range(steps):
        i = int(rows[t])
        optimizer.zero_grad()
        loss = 0.5 * (model(X[i]) - y[i]).pow(2).sum()
        loss.backward()
        optimizer.step()
        averager.average_parameters(model.parameters())
    elapsed = torch.tensor([time.perf_counter() - tic], dtype=torch.float64)
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    if rank == 0:
        print(json.dumps({"samples_per_s": 2 * steps / float(elapsed[0])}))
    dist.destroy_process_group()


if __name__ == "__main__":
    _rank(*(int(arg) for arg in sys.argv[1:5]))
