"""How the run loop sizes its tasks (engine.window), without a cluster."""

from __future__ import annotations

import pytest

from daskval.engine.window import MAX_TASK_BYTES, TaskSizer


def sizer(**kwargs: object) -> TaskSizer:
    return TaskSizer(n_players=10, target_task_seconds=0.5, **kwargs)  # type: ignore[arg-type]


def test_a_task_lasts_at_least_the_target_rounded_up() -> None:
    # 0.3 s samples: 0.5 s asks for 1.67 samples; rounding down gave 1
    assert sizer().size(0.3, None, 0, 2) == 2
    assert sizer().size(0.001, None, 0, 2) == 500


def test_many_threads_lengthen_tasks_for_the_scheduler() -> None:
    # at 1,000 threads a task lasts >= 1000 * 1.375 * 1.5 ms / 0.5 = 4.125 s
    assert sizer().task_seconds(1000) == pytest.approx(4.125)
    assert sizer().size(0.01, None, 0, 1000) == 413


def test_large_states_lengthen_tasks() -> None:
    # an 8 MB state: 8e6 * 4 ns / 0.1 = 0.32 s, times 4 threads per core
    big = sizer(state_bytes=8 * 10**6, threads_per_core=4.0)
    assert big.task_seconds(2) == pytest.approx(1.28)


def test_a_time_budget_ends_tasks_before_it_does() -> None:
    timed = sizer(seconds_left=lambda: 2.0)
    # 0.5 s target but only 2 s left: 0.9 * 2 / 0.01 = 180 samples at most
    assert timed.size(0.01, None, 0, 2) == 50
    assert sizer(seconds_left=lambda: 0.1).size(0.01, None, 0, 2) == 9
    assert timed.sample_can_finish(1.9) and not timed.sample_can_finish(2.1)
    assert sizer().sample_can_finish(10**6)  # no time budget
    assert timed.sample_can_finish(None)  # nothing measured yet


def test_what_remains_is_shared_among_the_threads() -> None:
    # 100 samples of 0.01 s left on 4 threads: the target asks for 50, but
    # every thread gets two tasks of what remains, 13 samples
    assert sizer().size(0.01, 1000, 900, 4) == 13
    # the target is below the share: it stands
    assert sizer().size(0.1, 1000, 900, 4) == 5
    # less work than one task: one task takes it
    assert sizer().size(0.001, 1000, 990, 4) == 500


def test_fixed_sizes_and_the_bounds() -> None:
    assert sizer(samples_per_task=7).size(None, None, 0, 2) == 7
    sharded = sizer(samples_per_task=70, max_samples_per_task=20)
    assert sharded.size(None, None, 0, 2) == 20
    wide = TaskSizer(n_players=10**7, target_task_seconds=0.5)
    assert wide.size(1e-9, None, 0, 2) == max(1, MAX_TASK_BYTES // (8 * 10**7))
    assert sizer().size(None, None, 0, 2) == 1  # nothing timed: one sample
