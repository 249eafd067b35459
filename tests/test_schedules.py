"""Averaging schedules are pure functions of the step; the plan meets exactly there."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsgd import stepsets
from parsgd.config.load import resolve, validate
from parsgd.config.spec import RunSpec
from parsgd.engine.plan import Plan
from parsgd.schedules import AveragingSchedule, eval_steps


@pytest.mark.parametrize(
    ("section", "total", "expected"),
    [
        ({"every": 1}, 4, [1, 2, 3, 4]),
        ({"every": 3}, 10, [3, 6, 9, 10]),
        ({"every": "end"}, 7, [7]),
        ({"every": 20}, 7, [7]),
        ({"at": [5, 2, 5]}, 9, [2, 5, 9]),
        ({"phases": [{"steps": 4, "every": 2}, {"steps": 6, "every": "end"}]}, 10, [2, 4, 10]),
        (
            {"phases": [{"steps": 5, "every": 2}, {"steps": 5, "every": 1}]},
            10,
            [2, 4, 5, 6, 7, 8, 9, 10],
        ),
        ({"every": 4, "warmup": 3}, 12, [1, 2, 3, 7, 11, 12]),
        ({"every": 2, "growth": 2.0}, 30, [2, 6, 14, 30]),
        ({"every": 8, "growth": 0.5}, 20, [8, 12, 14, 15, 16, 17, 18, 19, 20]),
    ],
)
def test_averaging_steps(section: dict, total: int, expected: list[int]) -> None:
    steps = AveragingSchedule.from_config(section).averaging_steps(total)
    assert steps.tolist() == expected


def test_eval_steps_start_at_zero_and_end_at_total() -> None:
    assert eval_steps(4, 10).tolist() == [0, 4, 8, 10]


def test_plan_meets_at_union_and_counts_syncs() -> None:
    config = resolve(
        validate(
            {
                "sgd": {"steps": 10},
                "averaging": {"every": 4},
                "eval": {"every": 5},
                "checkpoint": {"every": 1},
            }
        )
    )
    plan = Plan.from_spec(RunSpec.from_resolved(config))
    whole = plan.window(0, plan.meetings)
    assert whole.steps.tolist() == [0, 4, 5, 8, 10]
    assert whole.average.tolist() == [False, True, False, True, True]
    assert whole.record.tolist() == [True, False, True, False, True]
    assert whole.syncs.tolist() == [0, 1, 1, 2, 3]
    # Checkpoints after averaging rounds, never at the very end (the run is done there).
    assert whole.checkpoint.tolist() == [False, True, False, True, False]
    assert plan.sync_count == 3
    # A block from each meeting runs through the next recording or checkpoint meeting.
    assert whole.block_end.tolist() == [1, 2, 3, 4, 5]


_STEPS = st.lists(st.integers(0, 40), max_size=25)


@given(_STEPS, _STEPS, _STEPS)
def test_step_sets_agree_with_numpy(a: list[int], b: list[int], c: list[int]) -> None:
    """``stepsets.union`` replaces np.union1d (numpy 2.4's np.unique took seconds at
    every: 1): the same values, sorted inputs or not, empty ones included."""
    x, y, z = (np.array(v, dtype=np.int64) for v in (a, b, c))
    merged = stepsets.union(x, y, z)
    assert merged.dtype == np.int64
    np.testing.assert_array_equal(merged, np.union1d(np.union1d(x, y), z))
    np.testing.assert_array_equal(stepsets.union(x), np.union1d(x, x))
