"""Random streams whose draws are a pure function of (seed, trial, worker, step).

Every stream is a PCG64 generator keyed by a SeedSequence; a step consumes a fixed number of
64-bit outputs, so the draws for steps [a, b) are found by ``advance(a * per_step)`` and do
not depend on how a run is cut into segments. That is what makes the serial and process
backends agree bit for bit, and what lets a checkpoint hold only the step number instead of a
generator state.
"""

from __future__ import annotations

import numpy as np

# Stream purposes, kept apart by the SeedSequence spawn key.
SGD_STREAM = 0
INIT_STREAM = 1
DATA_STREAM = 2
WORKER_OBJECTIVE_STREAM = 3  # per-worker objectives: the heterogeneous quadratic
PARTITION_STREAM = 4  # which rows each worker samples (data.partition)
SHUFFLE_STREAM = 5  # each worker's permutation of its rows, per epoch (sgd.sampling shuffle)


class StepStream:
    """Uniform draws in [0, 1) for one worker of one trial, addressed by step."""

    def __init__(self, seed: int, trial: int, worker: int, per_step: int) -> None:
        self.per_step = per_step
        sequence = np.random.SeedSequence(seed, spawn_key=(SGD_STREAM, trial, worker))
        self._origin = np.random.PCG64(sequence).state
        self._generator: np.random.Generator | None = None
        self._next = -1  # the step the generator stands at

    def uniforms(self, start: int, stop: int) -> np.ndarray:
        """Array of shape (stop - start, per_step): the draws of steps start..stop-1."""
        if self._generator is None or start != self._next:
            # Jump (rebuilding is ~20 us; consecutive segments just continue the generator).
            bits = np.random.PCG64()
            bits.state = self._origin
            bits.advance(start * self.per_step)
            self._generator = np.random.Generator(bits)
        # Generator.random consumes exactly one 64-bit output per double.
        self._next = stop
        return self._generator.random((stop - start, self.per_step))


def normals_from_uniforms(uniforms: np.ndarray, count: int) -> np.ndarray:
    """Box-Muller: the first ``count`` standard normals of each row, from 2*ceil(count/2) draws.

    A fixed number of uniforms per normal keeps the stream addressable by step (numpy's
    ziggurat sampler consumes a variable number).
    """
    half = (count + 1) // 2
    radius = np.sqrt(-2.0 * np.log1p(-uniforms[:, :half]))
    angle = (2.0 * np.pi) * uniforms[:, half : 2 * half]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)[:, :count]


def uniforms_per_step_for_normals(count: int) -> int:
    return 2 * ((count + 1) // 2)


def generator(seed: int, *key: int) -> np.random.Generator:
    """An ordinary generator for one-off draws (data sets, initial points)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
