"""The plan, held as step sets and handed out in windows, is the plan held whole.

The reference here is the plan as arrays, the way it was built before it was windowed
(numpy's union1d and isin over every averaging and recording step), on schedules of every
kind drawn by hypothesis; the windowed plan must give the same meetings, in any split into
windows, and the same answers to where a step falls.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from parsgd.engine.control import GLOBAL, GROUP, GROUP_RECORDED
from parsgd.engine.plan import Cursor, Plan
from parsgd.schedules import AveragingSchedule, global_set
from parsgd.stepsets import Progression, StepSet


def _reference_averaging(schedule: AveragingSchedule, total: int) -> np.ndarray:
    """The averaging steps by brute force, read off the schedule's definition."""
    if schedule.at is not None:
        steps = list(schedule.at)
    elif schedule.phases is not None:
        steps, start = [], 0
        for length, every in schedule.phases:
            if every != "end":
                steps += range(start + every, start + length + 1, every)  # type: ignore[operator]
            steps.append(start + length)
            start += length
    else:
        steps = list(range(1, min(schedule.warmup, total) + 1))
        every = schedule.every
        if isinstance(every, int):
            t, interval = schedule.warmup, float(every)
            while True:
                t += max(1, round(interval))
                if t > total:
                    break
                steps.append(t)
                interval *= schedule.growth
    kept = [s for s in steps if 1 <= s <= total]
    return np.array(sorted({*kept, total}), dtype=np.int64)


def _reference_plan(
    averaging: np.ndarray, eval_every: int, global_every: Any, ckpt: int | None, total: int
) -> dict[str, np.ndarray]:
    recording = np.union1d(np.arange(0, total + 1, eval_every), [total])
    if global_every is None:
        rounds = averaging
    elif global_every == "end":
        rounds = averaging[averaging == total]
    else:
        rounds = averaging[(averaging % global_every == 0) | (averaging == total)]
    steps = np.union1d(averaging, recording).astype(np.int64)
    average = np.isin(steps, averaging)
    syncs = np.cumsum(average)
    checkpoint = average & (syncs % ckpt == 0) & (steps < total) if ckpt else 0 * average
    record = np.isin(steps, recording)
    is_global = np.isin(steps, rounds) | ~average
    level = np.where(is_global, GLOBAL, np.where(record | checkpoint, GROUP_RECORDED, GROUP))
    syncs_global = np.cumsum(average & is_global)
    return {"steps": steps, "average": average, "record": record,
            "checkpoint": checkpoint.astype(bool), "syncs": syncs, "level": level,
            "syncs_global": syncs_global}  # fmt: skip


_every = st.one_of(st.integers(1, 40), st.just("end"))
_schedules = st.one_of(
    st.builds(
        AveragingSchedule,
        every=_every,
        warmup=st.integers(0, 30),
        growth=st.sampled_from([1.0, 1.0, 0.5, 0.8, 1.3, 2.0]),
    ),
    st.builds(AveragingSchedule, at=st.lists(st.integers(-3, 250), max_size=20).map(tuple)),
    st.builds(
        AveragingSchedule,
        phases=st.lists(st.tuples(st.integers(1, 60), _every), min_size=1, max_size=5).map(tuple),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    schedule=_schedules,
    total=st.integers(1, 240),
    eval_every=st.integers(1, 60),
    global_every=st.one_of(st.none(), st.just("end"), st.integers(1, 30)),
    ckpt=st.one_of(st.none(), st.integers(1, 6)),
    one_model=st.booleans(),
    cuts=st.lists(st.integers(1, 40), max_size=8),
)
def test_the_windowed_plan_is_the_whole_plan(
    schedule: AveragingSchedule, total: int, eval_every: int, global_every: Any,
    ckpt: int | None, one_model: bool, cuts: list[int],
) -> None:  # fmt: skip
    shaped = schedule.growth != 1.0 or schedule.warmup
    if shaped and not isinstance(schedule.every, int):  # the config refuses these (rules.py)
        schedule = AveragingSchedule(every=3, warmup=schedule.warmup, growth=schedule.growth)
    averaging = np.empty(0, np.int64) if one_model else _reference_averaging(schedule, total)
    if not one_model:
        np.testing.assert_array_equal(schedule.averaging_steps(total), averaging)
    ref = _reference_plan(averaging, eval_every, global_every, ckpt, total)
    held = StepSet([]) if one_model else schedule.step_set(total)
    plan = Plan(total, held, eval_every, global_set(held, global_every, total), ckpt)
    n = len(ref["steps"])
    assert plan.meetings == n
    assert plan.sync_count == len(averaging)
    assert plan.global_sync_count == int(ref["syncs_global"][-1])
    for step in range(-1, total + 2):
        for side in ("left", "right"):
            assert plan.index_of(step, side) == np.searchsorted(ref["steps"], step, side=side)
    # Windows of any sizes, cut anywhere, put back together: the whole plan.
    bounds = sorted({0, n, *(min(n, c * 3) for c in cuts)})
    windows = [plan.window(lo, hi) for lo, hi in itertools.pairwise(bounds)]
    for name, expected in ref.items():
        got = np.concatenate([getattr(w, name) for w in windows])
        np.testing.assert_array_equal(got, expected, err_msg=name)
    # A block runs through the next Python meeting, or to its window's end.
    python = ref["record"] | ref["checkpoint"]
    breaks = np.flatnonzero(python)
    whole_end = np.append(breaks, n)[np.searchsorted(breaks, np.arange(n))] + 1
    for w in windows:
        expected_end = np.minimum(whole_end[w.first : w.end], w.end) - w.first
        np.testing.assert_array_equal(w.block_end, expected_end)
        np.testing.assert_array_equal(w.python, python[w.first : w.end])
    for index in range(0, n, max(1, n // 7)):
        assert plan.step_of(index) == ref["steps"][index]
        w = Cursor(plan).at(index)
        assert w.first == index and w.steps[0] == ref["steps"][index]


@given(
    first=st.integers(-20, 60), length=st.integers(0, 200), every=st.integers(1, 17),
    g=st.integers(1, 25),
)  # fmt: skip
def test_a_progression_counts_slices_and_intersects_like_its_steps(
    first: int, length: int, every: int, g: int
) -> None:
    p = Progression.span(first, first + length, every)
    assert p is not None
    steps = np.arange(first, first + length + 1, every)
    for s in range(first - 3, first + length + 3, 3):
        assert p.count(s) == np.count_nonzero(steps <= s)
        np.testing.assert_array_equal(p.between(s, s + 11), steps[(steps > s) & (steps <= s + 11)])
    multiples = p.multiples_of(g)
    got = multiples.between(-(10**9), 10**9) if multiples else np.empty(0, np.int64)
    np.testing.assert_array_equal(got, steps[steps % g == 0])
