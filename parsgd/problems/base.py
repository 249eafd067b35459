"""A problem is a data source and an objective, ready for the engine.

The engine needs four things from it: its compiled step (``step_kernel``: the loop the
compiled meetings run between meetings, with its arrays), the
loss of a model (split into shards so M workers can share an evaluation, summed in a fixed
order), the optimum where it is known, and how many uniforms one step consumes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from parsgd.problems.steps import StepKernel, step

# Rows gathered at once by loss_on_rows (bounds its temporary copy).
_ROWS_AT_ONCE = 4096


class Problem(ABC):
    d: int
    batch_size: int
    w_opt: np.ndarray | None = None
    f_opt: float | None = None
    # Per-coordinate scale of a random start (sgd.init shared/independent), times init_scale.
    init_std: np.ndarray | float = 1.0
    # Rows of the pool a step samples: sample k of a step is row floor(u_k * n) of the
    # uniforms (what data.partition and sgd.sampling steer); 0 for streams and the quadratic.
    n: int = 0

    @property
    @abstractmethod
    def uniforms_per_step(self) -> int:
        """How many uniforms in [0, 1) one SGD step of one worker consumes."""

    @abstractmethod
    def step_kernel(self) -> StepKernel:
        """The compiled loop of this objective and its packed arrays (see ``steps``)."""

    def sgd(self, w: np.ndarray, uniforms: np.ndarray, etas: np.ndarray, rank: int = 0) -> None:
        """Run ``len(etas)`` steps of worker ``rank`` on ``w`` in place; ``uniforms`` has one
        row per step.

        The same compiled call the meetings make, so tests of a kernel test the run's code.
        """
        kernel = self.step_kernel()
        step(kernel.data, rank, w, kernel.prepare(uniforms), etas)

    @abstractmethod
    def loss_partial(self, w: np.ndarray, shard: int, shards: int) -> float:
        """This shard's contribution to the loss; ``finish_loss`` turns the sum into f(w)."""

    @abstractmethod
    def finish_loss(self, total: float, w: np.ndarray) -> float:
        """f(w) from the sum of all shards' partials (taken in shard order)."""

    def loss(self, w: np.ndarray) -> float:
        return self.finish_loss(self.loss_partial(w, 0, 1), w)

    def class_labels(self) -> np.ndarray | None:
        """The pool's class label of every row (for data.partition dirichlet), or None."""
        return None

    def loss_partial_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        """``loss_partial`` over the given pool rows instead of a contiguous shard."""
        raise NotImplementedError(f"{type(self).__name__} has no pool rows")

    def loss_on_rows(self, w: np.ndarray, rows: np.ndarray) -> float:
        """The objective restricted to some pool rows (a worker's shard): the mean sample
        loss over them plus the same regulariser as ``loss``."""
        total = 0.0
        for lo in range(0, rows.shape[0], _ROWS_AT_ONCE):
            total += self.loss_partial_rows(w, rows[lo : lo + _ROWS_AT_ONCE])
        return self.finish_loss(total * self.n / rows.shape[0], w)

    def extra_metrics(self, w: np.ndarray) -> dict[str, float | None]:
        """Problem-specific trace columns for the averaged model (see EXTRA_COLUMNS).

        They are applied last, so a problem whose optimum is a set (pca: +-w*) can also set
        ``dist_opt_sq`` here, leaving ``w_opt`` None.
        """
        return {}
