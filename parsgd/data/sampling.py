"""Per-worker sampling of rows: the partition (``data.partition``) and the order
(``sgd.sampling``), applied to a worker's uniforms before the compiled kernels see them.

The pool kernels take sample k of step t as row ``min(int(u[t, k] * n), n - 1)`` of the
whole pool. A ``RowSampler`` decides the row r itself and hands the kernel the uniform
``(r + 0.5) / n``, the centre of r's interval, which the kernel maps back to r exactly
(``(r + 0.5) / n * n`` is within two ulps of ``r + 0.5``, far from an integer, for any
n < 2^50). So the kernels stay what they are, and the default (``shared`` with
``with_replacement``) has no sampler at all: its uniforms, and so its traces, are bit for bit
those of a run without these keys.

    with_replacement   row = rows_m[floor(u * len_m)]: uniform over the worker's rows
    shuffle            the worker's s-th sample (s = t * batch + k, counted from step 0) is
                       rows_m[perm_e[s mod len_m]] with e = s // len_m and perm_e a
                       permutation drawn from (seed, trial, worker, e) alone

Both are pure functions of (seed, trial, worker, step), like the uniforms, so a block of
steps gives the same rows however a run is cut: serial equals processes and a resumed run
equals an uninterrupted one, bit for bit. The uniforms are drawn under ``shuffle`` too (and
not used), so every run keeps one stream layout.
"""

from __future__ import annotations

import numpy as np

from parsgd.data.partition import Partition
from parsgd.rng import SHUFFLE_STREAM, StepStream, generator


class RowSampler:
    """Turns one worker's uniforms into the uniforms that pick its rows."""

    def __init__(
        self, partition: Partition, worker: int, shuffle: bool, seed: int, trial: int
    ) -> None:
        self.n = partition.n
        own = partition.of(worker)
        self.rows = np.arange(self.n, dtype=np.int64) if own is None else own
        self.shuffle = shuffle
        self.seed, self.trial, self.worker = seed, trial, worker
        self._epoch = -1
        self._perm = np.empty(0, np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """The worker's rows in the order of ``epoch`` (the last one is kept)."""
        if epoch != self._epoch:
            rng = generator(self.seed, SHUFFLE_STREAM, self.trial, self.worker, epoch)
            self._perm = self.rows[rng.permutation(self.rows.shape[0])]
            self._epoch = epoch
        return self._perm

    def pick(self, uniforms: np.ndarray, start: int) -> np.ndarray:
        """Row indices for ``uniforms`` (steps x batch) of steps ``start``, ``start + 1``, ..."""
        steps, batch = uniforms.shape
        size = self.rows.shape[0]
        if not self.shuffle:
            at = np.minimum((uniforms * size).astype(np.int64), size - 1)
            return self.rows[at]
        sample = np.arange(start * batch, (start + steps) * batch, dtype=np.int64)
        epochs, positions = np.divmod(sample, size)
        out = np.empty(sample.shape[0], np.int64)
        for epoch in np.unique(epochs).tolist():
            where = epochs == epoch
            out[where] = self.permutation(epoch)[positions[where]]
        return out.reshape(steps, batch)

    def uniforms(self, uniforms: np.ndarray, start: int) -> np.ndarray:
        """The uniforms the kernels turn back into the rows ``pick`` chose."""
        return (self.pick(uniforms, start) + 0.5) / self.n


class SampledStream:
    """A ``StepStream`` whose draws pick the worker's rows (same interface)."""

    def __init__(self, stream: StepStream, sampler: RowSampler) -> None:
        self.stream, self.sampler = stream, sampler
        self.per_step = stream.per_step

    def uniforms(self, start: int, stop: int) -> np.ndarray:
        return self.sampler.uniforms(self.stream.uniforms(start, stop), start)
