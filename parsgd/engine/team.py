"""A run's algorithm except how ranks are scheduled: shared state, models, statistics.

The meetings themselves are compiled (``meetings.run_block``); ``loop.run_ranks`` drives
them for the ranks of one process. This module holds what both need: the arrays all workers
share, the settings read once from the config, the random streams, and the reduction of the
per-rank statistics into a trace row at a recording meeting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from parsgd.data.partition import Partition
from parsgd.data.sampling import RowSampler, SampledStream
from parsgd.data.synthetic import Arena
from parsgd.engine.barrier import PAD, POSITION
from parsgd.engine.control import GLOBAL, N_CONTROL
from parsgd.engine.meetings import MOMENTUM_KEEP, average_rows, settle_buffer
from parsgd.engine.plan import Plan
from parsgd.problems.base import Problem
from parsgd.rng import INIT_STREAM, StepStream, generator
from parsgd.schedules import StepSize

# Optional trace columns a problem may fill through Problem.extra_metrics.
EXTRA_COLUMNS = ("test_loss", "test_accuracy", "alignment")

# Columns of the per-rank statistics block (OWN_LOSS: the model's loss on its own rows).
WORKER_LOSS, AVG_LOSS_PARTIAL, SPREAD, COMPUTE_S, SYNC_S, EVAL_S, OWN_LOSS = range(7)
N_STATS = 7

# Float64s per pair of cache lines (128 bytes), the model rows' alignment: the L2 prefetcher
# fetches lines in aligned pairs, so a row ending mid-pair would drag its neighbour's
# first line back and forth between the cores.
ROW_ALIGN = 16


class TeamState:
    """The arrays all workers share: the double-buffered model table, statistics, each
    rank's announcement line (barrier generation, step reached, flags) and the control block."""

    def __init__(
        self,
        arena: Arena,
        workers: int,
        d: int,
        shared_model: bool = False,
        momentum: bool = False,
        flag_column: bool = False,
    ) -> None:
        # Hogwild!: one model, updated in place by every rank, so one buffer of one row.
        buffers, rows = (1, 1) if shared_model else (2, workers)
        # Each row starts on its own cache line: a worker writes its whole row every step, and
        # two rows sharing a line would bounce it between the cores at every step (false
        # sharing). The compiled meetings take ``table``; ``W`` is its unpadded view. With
        # momentum a row is [w, v]: the buffer is averaged, checkpointed and resumed with its
        # model by the same code that handles the model.
        width = 2 * d if momentum else d
        # flag_column (a backend across nodes): the row's last column carries its rank's flags
        # to the other nodes with the row itself (mpi_node.exchange_meeting), one message.
        padded = -(-(width + flag_column) // ROW_ALIGN) * ROW_ALIGN
        self.table = arena.zeros((buffers, rows, padded))
        self.W = self.table[:, :, :width]
        self.flag_column = padded - 1 if flag_column else None
        self.stats = arena.zeros((workers, N_STATS))
        # One line per rank: its barrier generation, step reached and flags (barrier.py).
        self.arrive = arena.zeros((workers * PAD,), np.int64)
        self.control = arena.zeros((N_CONTROL,), np.int64)

    def position(self, rank: int) -> int:
        """The step of the last meeting ``rank`` reached (its local steps up to it done)."""
        return int(self.arrive[rank * PAD + POSITION])


@dataclass(frozen=True)
class Settings:
    """What a rank needs from the config, read once."""

    workers: int
    trials: int
    seed: int
    batch_size: int
    init: str
    init_scale: float
    step_size: StepSize
    shared_model: bool = False  # Hogwild!: every rank updates row 0, without locks
    nodes: int = 1  # groups of ``workers // nodes`` ranks that average among themselves
    shuffle: bool = False  # sgd.sampling shuffle: each epoch a permutation of a rank's rows
    momentum: float = 0.0  # sgd.momentum beta; > 0: rows of the model table are [w, v]
    nesterov: bool = False
    momentum_mode: int = MOMENTUM_KEEP  # averaging.momentum (meetings.MOMENTUM_MODES)


class Team:
    """All of one run's algorithm except how ranks are scheduled."""

    def __init__(
        self,
        problem: Problem,
        plan: Plan,
        state: TeamState,
        settings: Settings,
        partition: Partition | None = None,
    ) -> None:
        self.problem = problem
        # Which rows each rank samples (data.partition); None: every rank samples all.
        self.partition = partition
        self.sampled = settings.shuffle or (partition is not None and not partition.shared)
        self.plan = plan
        self.state = state
        self.settings = settings
        self.kernel = problem.step_kernel()
        M = settings.workers
        self.rows = np.array([0 if settings.shared_model else r for r in range(M)], np.int64)
        self.group = M // settings.nodes  # ranks per group
        self.row_group = 1 if settings.shared_model else self.group
        self._streams: dict[tuple[int, int], StepStream | SampledStream] = {}
        # Per rank and private to the process that runs it: this trial's, and earlier trials'.
        self.timers = np.zeros((M, N_STATS))
        self.totals = np.zeros((M, N_STATS))

    # -- models -----------------------------------------------------------------------------

    def buffer_before(self, trial: int, index: int) -> int:
        """The table buffer that holds the models meeting ``index`` of ``trial`` starts from.

        Meetings are counted across trials, so a trial's first meeting never reads the
        buffer its predecessor's last meeting read (rank 0 may still be reading it)."""
        return (trial * self.plan.meetings + index) % self.state.W.shape[0]

    def models_after(self, trial: int, step: int) -> np.ndarray:
        """A copy of every row after the meeting at ``step`` (-1: the initial models)."""
        index = self.plan.index_of(step)
        return self.state.W[self.buffer_before(trial, index + 1 if step >= 0 else 0)].copy()

    def load_models(self, trial: int, step: int, W: np.ndarray) -> None:
        """Put models read from a checkpoint back where the meeting after ``step`` reads."""
        index = self.plan.index_of(step)
        self.state.W[self.buffer_before(trial, index + 1)] = W

    def adopted_after(self, table: np.ndarray, level: int) -> np.ndarray:
        """Every row after a meeting that adopted, rebuilt from the rows it read (``table``),
        as the meeting computed them: so no peer's row is read while it is stepping it."""
        table = np.ascontiguousarray(table)  # W's rows are padded: one compiled layout
        out = np.empty_like(table)
        scratch = np.empty(table.shape[1])
        size = table.shape[0] if level == GLOBAL else self.row_group
        for lo in range(0, table.shape[0], size):
            average_rows(table, lo, lo + size, self.row_group, out[lo], scratch)
            out[lo + 1 : lo + size] = out[lo]
        d = self.problem.d if self.settings.momentum > 0.0 else 0
        for row in range(table.shape[0]):
            settle_buffer(out[row], table[row], d, self.settings.momentum_mode)
        return out

    def init_model(self, trial: int, rank: int) -> None:
        s = self.settings
        row = self.state.W[self.buffer_before(trial, 0), self.rows[rank]]
        w = row[: self.problem.d]
        row[self.problem.d :] = 0.0  # a momentum buffer starts at zero
        self.totals[rank] += self.timers[rank]
        self.timers[rank] = 0.0
        if s.shared_model and rank != 0:
            return  # rank 0 initialises the one model before the first meeting
        if s.init == "zeros":
            w[:] = 0.0
        else:
            key = (trial,) if s.init == "shared" else (trial, rank)
            normals = generator(s.seed, INIT_STREAM, *key).standard_normal(w.size)
            w[:] = (s.init_scale * self.problem.init_std) * normals

    def stream(self, trial: int, rank: int) -> StepStream | SampledStream:
        """This rank's random stream for this trial (kept for the trial, then dropped)."""
        key = (trial, rank)
        found = self._streams.get(key)
        if found is not None:
            return found
        if any(k[0] != trial for k in self._streams):
            self._streams.clear()  # one trial at a time: drop the previous trial's streams
        s = self.settings
        draws = StepStream(s.seed, trial, rank, self.problem.uniforms_per_step)
        stream: StepStream | SampledStream = draws
        if self.sampled:  # the default samples the whole pool straight from the uniforms
            partition = self.partition or Partition(self.problem.n, s.workers)
            sampler = RowSampler(partition, rank, s.shuffle, s.seed, trial)
            stream = SampledStream(draws, sampler)
        self._streams[key] = stream
        return stream

    # -- statistics -------------------------------------------------------------------------

    def record_stats(self, rank: int, model: np.ndarray, avg: np.ndarray) -> None:
        """This rank's share of a trace row: its model's loss, its shard of the average's
        loss, its distance to the average, and its timers."""
        st = self.state
        d = self.problem.d  # a row may carry a momentum buffer after the model
        model, avg = model[:d], avg[:d]
        stats = st.stats[rank]
        # One shared model has no per-worker losses to compare with the average.
        shared = self.settings.shared_model
        stats[WORKER_LOSS] = math.nan if shared else self.problem.loss(model)
        stats[AVG_LOSS_PARTIAL] = self.problem.loss_partial(avg, rank, self.settings.workers)
        diff = model - avg
        stats[SPREAD] = float(diff @ diff)
        stats[COMPUTE_S] = self.timers[rank, COMPUTE_S]
        stats[SYNC_S] = self.timers[rank, SYNC_S]
        stats[EVAL_S] = self.timers[rank, EVAL_S]
        own = None if self.partition is None or shared else self.partition.of(rank)
        stats[OWN_LOSS] = math.nan if own is None else self.problem.loss_on_rows(model, own)

    def trace_row(
        self, trial: int, step: int, syncs: tuple[int, int], wall_s: float, avg: np.ndarray,
        models: np.ndarray,
    ) -> dict[str, Any]:  # fmt: skip
        """Reduce every rank's statistics (rank 0, after the recording barrier).

        ``models`` are the rows the meeting read (for the spreads within and between nodes).
        """
        st, problem, M = self.state, self.problem, self.settings.workers
        avg, models = avg[: problem.d], models[:, : problem.d]
        loss = problem.finish_loss(math.fsum(st.stats[:, AVG_LOSS_PARTIAL].tolist()), avg)
        workers_mean = math.fsum(st.stats[:, WORKER_LOSS].tolist()) / M
        row: dict[str, Any] = {
            "trial": trial,
            "step": step,
            "samples": step * M * self.settings.batch_size,
            "syncs": syncs[0],
            "syncs_global": syncs[1],
            "wall_s": wall_s,
            "loss": loss,
            "loss_workers_mean": workers_mean,
            "variance": math.fsum(st.stats[:, SPREAD].tolist()) / M,
            "spread_within_nodes": None,
            "spread_between_nodes": None,
            "gap": workers_mean - loss,
            "dist_opt_sq": None,
            "subopt": None,
            "compute_s": float(np.mean(st.stats[:, COMPUTE_S])),
            "sync_wait_s": float(np.mean(st.stats[:, SYNC_S])),
            "loss_own_mean": None,
            "loss_own_max": None,
        }
        if (
            self.partition is not None
            and not self.partition.shared
            and not self.settings.shared_model
        ):
            own = st.stats[:, OWN_LOSS].tolist()
            row["loss_own_mean"] = math.fsum(own) / M
            row["loss_own_max"] = max(own)
        if self.settings.shared_model:
            # Hogwild! has one model: no spread between workers and no averaging gap.
            row["loss_workers_mean"] = row["variance"] = row["gap"] = None
        elif self.settings.nodes > 1:
            row.update(self._node_spreads(models, avg))
        if problem.w_opt is not None:
            diff = avg - problem.w_opt
            row["dist_opt_sq"] = float(diff @ diff)
        if problem.f_opt is not None:
            row["subopt"] = loss - problem.f_opt
        for column in EXTRA_COLUMNS:
            row[column] = None
        row.update(problem.extra_metrics(avg))
        return row

    def _node_spreads(self, models: np.ndarray, avg: np.ndarray) -> dict[str, float]:
        """Mean squared distance of workers to their node's average, and of the node averages
        to the global average."""
        models = np.ascontiguousarray(models)  # W's rows are padded: one compiled layout
        within, between = [], []
        scratch = np.empty(models.shape[1])
        node_avg = np.empty(models.shape[1])
        for lo in range(0, models.shape[0], self.row_group):
            average_rows(models, lo, lo + self.row_group, self.row_group, node_avg, scratch)
            diff = models[lo : lo + self.row_group] - node_avg
            within.extend((diff * diff).sum(axis=1).tolist())
            gap = node_avg - avg
            between.append(float(gap @ gap))
        return {
            "spread_within_nodes": math.fsum(within) / len(within),
            "spread_between_nodes": math.fsum(between) / len(between),
        }

    def timings(self, rank: int) -> dict[str, float]:
        """Seconds this rank spent computing, at meetings and evaluating, over all trials."""
        spent = self.totals[rank] + self.timers[rank]
        return {
            "compute_s": float(spent[COMPUTE_S]),
            "sync_s": float(spent[SYNC_S]),
            "eval_s": float(spent[EVAL_S]),
        }
