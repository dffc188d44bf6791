from __future__ import annotations

import itertools

import pytest

from gpucloud.core.errors import IllegalTransition
from gpucloud.core.states import (
    HOLDS_ALLOCATION,
    TERMINAL,
    TRANSITIONS,
    JobState,
    check_transition,
)


def test_every_state_has_a_row_in_the_table() -> None:
    assert set(TRANSITIONS) == set(JobState)


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
        assert state.terminal


def test_every_non_terminal_state_can_be_cancelled_and_reach_an_end() -> None:
    for state in set(JobState) - TERMINAL:
        assert JobState.CANCELLED in TRANSITIONS[state]


def test_happy_path_is_allowed() -> None:
    path = [
        JobState.PENDING,
        JobState.QUEUED,
        JobState.SCHEDULED,
        JobState.STARTING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    for before, after in itertools.pairwise(path):
        check_transition("job_x", before, after)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (JobState.PENDING, JobState.RUNNING),
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.SUCCEEDED, JobState.QUEUED),
        (JobState.CANCELLED, JobState.RUNNING),
        (JobState.RUNNING, JobState.PENDING),
        (JobState.FAILED, JobState.QUEUED),
    ],
)
def test_illegal_transitions_raise_a_typed_error(before: JobState, after: JobState) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition("job_x", before, after)
    assert info.value.current == before.value and info.value.target == after.value


def test_a_faulted_run_goes_back_to_the_queue_and_can_run_again() -> None:
    for before in (JobState.STARTING, JobState.RUNNING):
        check_transition("job_x", before, JobState.QUEUED)
    check_transition("job_x", JobState.QUEUED, JobState.SCHEDULED)


def test_only_placed_states_hold_allocations() -> None:
    assert {JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING} == HOLDS_ALLOCATION
