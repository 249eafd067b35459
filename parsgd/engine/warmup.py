"""The one kernel warm-up: compile (or load from numba's cache) what a run will call.

Called before the workers fork, so each inherits the machine code instead of loading it
inside its first trial's clock; a sweep calls it once before forking its runs.
"""

from __future__ import annotations

import numpy as np

from parsgd.data.shared import LocalArena
from parsgd.engine import meetings, plan
from parsgd.engine.barrier import PAD, wait
from parsgd.engine.team import Team
from parsgd.problems.base import Problem
from parsgd.stepsets import StepSet


def warm_up(team: Team) -> None:
    """Compile the problem's step, its loss and the meetings for this team's array types."""
    problem, st, kernel = team.problem, team.state, team.kernel
    w = np.zeros(problem.d)
    problem.sgd(w, np.full((1, problem.uniforms_per_step), 0.5), np.zeros(1))
    problem.loss_partial(w, 0, 1)
    inputs = kernel.prepare(np.full((0, problem.uniforms_per_step), 0.5))[None]
    none, i64 = team.plan.window(0, 0), np.zeros(1, dtype=np.int64)  # typed, empty
    meetings.run_block(
        kernel.data, st.table, np.zeros((1, st.W.shape[2])), np.zeros(1), st.arrive,
        st.control, i64, team.rows, 1, 1, inputs, np.zeros(0), 0,
        none.steps, none.level, none.average, 0, False, 0, np.zeros(2, np.int64),
        i64.copy(), np.zeros(2), team.settings.momentum, team.settings.nesterov,
        team.settings.momentum_mode,
    )  # fmt: skip
    wait(np.zeros(PAD, dtype=np.int64), st.control, 0, 0, 0, 0, 0)
    plan.compile_kernels()


def warm_up_problem(problem: Problem) -> None:
    """``warm_up`` for a problem alone (a sweep, before it knows each run's team)."""
    from parsgd.engine.team import Settings, TeamState
    from parsgd.schedules import StepSize

    averaging = StepSet.of([1])
    one = plan.Plan(1, averaging, 1, averaging, None)
    settings = Settings(1, 1, 0, problem.batch_size, "zeros", 1.0, StepSize(0.0))
    warm_up(Team(problem, one, TeamState(LocalArena(), 1, problem.d), settings))
