"""The bare-metal lifecycle's pure rules: the transition table, the next Redfish step in each
state from what the BMC shows, which server a lease takes, and admission on funds."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpucloud.core.baremetal import (
    AFTER,
    HELD,
    NOT_SCHEDULABLE,
    TRANSITIONS,
    WORKING,
    BareMetalState,
    Candidate,
    Observed,
    Progress,
    Refusal,
    Step,
    check_transition,
    lease_shortfall_minor,
    next_step,
    pick_server,
    progressed,
    timed_out,
)
from gpucloud.core.errors import IllegalTransition

B = BareMetalState
OFF, ON = Observed(power_on=False, media=None), Observed(power_on=True, media=None)


def test_the_table_is_the_issues_cycle_with_maintenance_from_every_step() -> None:
    cycle = [B.AVAILABLE, B.PROVISIONING, B.LEASED, B.RELEASING, B.CLEANING, B.AVAILABLE]
    for current, target in itertools.pairwise(cycle):
        check_transition("s", current, target)
    for state in B:
        if state is not B.MAINTENANCE:
            check_transition("s", state, B.MAINTENANCE)
    check_transition("s", B.MAINTENANCE, B.CLEANING)  # returned: wiped before anyone gets it
    with pytest.raises(IllegalTransition, match="s cannot go from maintenance to available"):
        check_transition("s", B.MAINTENANCE, B.AVAILABLE)
    with pytest.raises(IllegalTransition):
        check_transition("s", B.CLEANING, B.LEASED)  # never to a tenant unwiped
    assert set(TRANSITIONS) == set(B)
    assert {AFTER[s] for s in WORKING} <= {t for s in WORKING for t in TRANSITIONS[s]}
    assert B.AVAILABLE not in NOT_SCHEDULABLE and HELD <= NOT_SCHEDULABLE


def run(state: BareMetalState, bmc_power: list[bool]) -> list[Step]:
    """Steps taken until DONE, the BMC showing each power state in turn (then the last)."""
    done, steps = Progress(), []
    for i in range(20):
        seen = Observed(power_on=bmc_power[min(i, len(bmc_power) - 1)],
                        media="http://x/img.iso" if done.media_inserted else None)
        step = next_step(state, seen, done)
        steps.append(step)
        if step is Step.DONE:
            return steps
        done = progressed(done, step)
    raise AssertionError(f"{state} never finished: {steps}")


def test_provisioning_inserts_the_image_powers_on_and_waits_to_see_it_on() -> None:
    assert run(B.PROVISIONING, [False, False, False, True]) == [
        Step.INSERT_MEDIA, Step.POWER_ON, Step.WAIT, Step.BOOTED, Step.DONE]


def test_cleaning_waits_for_the_wipe_image_to_power_the_server_off() -> None:
    assert run(B.CLEANING, [False, False, True, True, True, False]) == [
        Step.INSERT_MEDIA, Step.POWER_ON, Step.BOOTED, Step.WAIT, Step.WAIT, Step.DONE]


def test_releasing_powers_off_once_then_ejects() -> None:
    steps = [next_step(B.RELEASING, ON, Progress()),
             next_step(B.RELEASING, ON, Progress(power_off_requested=True)),
             next_step(B.RELEASING, Observed(False, "http://x/img.iso"), Progress()),
             next_step(B.RELEASING, OFF, Progress())]
    assert steps == [Step.POWER_OFF, Step.WAIT, Step.EJECT_MEDIA, Step.DONE]


@given(st.sampled_from([B.AVAILABLE, B.LEASED, B.MAINTENANCE]), st.booleans(), st.booleans())
def test_states_without_bmc_work_do_nothing_whatever_the_bmc_shows(
        state: BareMetalState, on: bool, inserted: bool) -> None:
    assert next_step(state, Observed(on, None), Progress(media_inserted=inserted)) is Step.IDLE


@given(st.sampled_from(sorted(WORKING)), st.booleans(), st.booleans(), st.booleans(),
       st.booleans(), st.booleans())
def test_the_next_step_is_level_triggered(state: BareMetalState, on: bool, media: bool,
                                          inserted: bool, requested: bool, booted: bool) -> None:
    """Same inputs, same step; and no step repeats what the progress says is done."""
    done = Progress(media_inserted=inserted, power_requested=requested, booted=booted)
    seen = Observed(on, "u" if media else None)
    step = next_step(state, seen, done)
    assert step is next_step(state, seen, done)
    if step is Step.INSERT_MEDIA:
        assert not inserted
    if step is Step.POWER_ON:
        assert not requested
    assert Progress.from_json(progressed(done, step).to_json()) == progressed(done, step)


def test_timeouts_apply_to_working_states_only() -> None:
    assert timed_out(B.PROVISIONING, 901) and not timed_out(B.PROVISIONING, 899)
    assert not timed_out(B.LEASED, 10**9)


def cand(name: str, model: str = "M", state: BareMetalState = B.AVAILABLE, busy: bool = False,
         priced: bool = True) -> Candidate:
    return Candidate(name, model, state, busy, priced)


def test_a_lease_takes_the_first_free_server_of_the_model_or_says_why_not() -> None:
    fleet = [cand("b", busy=True), cand("c"), cand("a", state=B.LEASED), cand("z", "N",
                                                                               priced=False)]
    assert pick_server(fleet, server=None, model="m") == fleet[1]
    assert pick_server(fleet, server="C", model=None) == fleet[1]
    refusal, why = pick_server(fleet, server="b", model=None)  # type: ignore[misc]
    assert refusal is Refusal.TAKEN and "running jobs" in why
    refusal, why = pick_server(fleet, server=None, model="N")  # type: ignore[misc]
    assert refusal is Refusal.TAKEN and "price set --server N" in why
    refusal, why = pick_server(fleet, server="q", model=None)  # type: ignore[misc]
    assert refusal is Refusal.UNKNOWN
    refusal, why = pick_server(fleet, server=None, model="X")  # type: ignore[misc]
    assert refusal is Refusal.UNKNOWN and "models: M, N" in why
    refusal, _ = pick_server(fleet, server="c", model="M")  # type: ignore[misc]
    assert refusal is Refusal.INVALID


def test_admission_needs_the_runway_covered_rounded_up() -> None:
    assert lease_shortfall_minor(1000, 3600_00, 10) == 0  # 10 s at 3600.00/h: 10.00
    assert lease_shortfall_minor(2, 1000, 10) == 1  # 10 s at 10.00/h: 0.0278 -> 0.03
    assert lease_shortfall_minor(0, 1, 1) == 1  # a fraction of a minor unit is still owed
    assert lease_shortfall_minor(150, 360_000, 10) == 850
