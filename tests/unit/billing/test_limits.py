"""Quotas and budgets, decided purely: periods, parsing, admission, never-fits and stops."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpucloud.billing.limits import (
    Claim,
    Limit,
    LimitKind,
    Period,
    PeriodUsage,
    Running,
    budget_stops,
    claim_of,
    first_blocking,
    nearly_spent,
    never_within,
    parse_limit,
    used,
)
from gpucloud.billing.pricing import SCALE
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.states import Reason

NOW = datetime(2026, 11, 25, 13, 30, tzinfo=UTC)  # a Wednesday
FLEET = {"H100", "A100-80G"}
CENT_PER_SECOND = SCALE  # SCALE units are one minor unit: 0.01 CNY a second


def h100(gpus: int) -> Claim:
    return claim_of(gpus, "H100", FLEET)


def test_periods_are_utc_calendar_days_weeks_from_monday_and_months() -> None:
    assert Period.DAY.start(NOW) == datetime(2026, 11, 25, tzinfo=UTC)
    assert Period.DAY.end(NOW) == datetime(2026, 11, 26, tzinfo=UTC)
    assert Period.WEEK.start(NOW) == datetime(2026, 11, 23, tzinfo=UTC)
    assert Period.WEEK.end(NOW) == datetime(2026, 11, 30, tzinfo=UTC)
    assert Period.MONTH.start(NOW) == datetime(2026, 11, 1, tzinfo=UTC)
    december = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert Period.MONTH.end(december) == datetime(2027, 1, 1, tzinfo=UTC)


def test_parse_limit_reads_each_unit_exactly_and_refuses_finer_values() -> None:
    assert parse_limit(LimitKind.GPUS, "4", "h100", None, "CNY") == Limit(LimitKind.GPUS, 4, "H100")
    assert parse_limit(LimitKind.COMPUTE_UNITS, "12.8", None, None, "CNY").amount == 12_800
    assert parse_limit(LimitKind.CARD_HOURS, "0.5", None, Period.WEEK, "CNY").amount == 1800
    assert parse_limit(LimitKind.SPEND, "5000.00", None, Period.MONTH, "CNY").amount == 500_000
    for kind, value, period in [
        (LimitKind.GPUS, "2.5", None),
        (LimitKind.GPUS, "many", None),
        (LimitKind.CARD_HOURS, "1.00001", Period.DAY),
        (LimitKind.SPEND, "1.001", Period.DAY),
        (LimitKind.GPUS, "-1", None),
    ]:
        with pytest.raises(InvalidRequest):
            parse_limit(kind, value, None, period, "CNY")


@pytest.mark.parametrize(
    ("kind", "model", "period", "fragment"),
    [
        (LimitKind.SPEND, "H100", Period.DAY, "cannot name a GPU model"),
        (LimitKind.CARD_HOURS, None, None, "needs a period"),
        (LimitKind.GPUS, None, Period.DAY, "drop the period"),
    ],
)
def test_malformed_limits_say_what_to_fix(
    kind: LimitKind, model: str | None, period: Period | None, fragment: str
) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        Limit(kind, 1, model, period)


def test_a_gpu_cap_waits_when_held_plus_asked_exceeds_it() -> None:
    cap = [Limit(LimitKind.GPUS, 4, "H100")]
    held = [h100(3)]
    blocked = first_blocking(cap, h100(2), held, {}, 600, 0, "CNY", NOW)
    assert blocked is not None and blocked.reason is Reason.WAITING_FOR_QUOTA
    assert "at most 4 H100s at once" in blocked.message and "3 H100s already" in blocked.message
    assert first_blocking(cap, h100(1), held, {}, 600, 0, "CNY", NOW) is None
    # Another model is not held to an H100 cap; a job that may land anywhere is.
    assert first_blocking(cap, claim_of(8, "A100-80G", FLEET), held, {}, 600, 0, "CNY", NOW) is None
    assert first_blocking(cap, claim_of(2, None, FLEET), held, {}, 600, 0, "CNY", NOW) is not None


def test_compute_units_weigh_each_model_and_any_gpu_at_the_heaviest() -> None:
    assert h100(2).milli_cu == 6400  # H100 weighs 3.2 A100-80Gs
    assert claim_of(2, None, FLEET).milli_cu == 6400
    assert claim_of(2, "A100-80G", FLEET).milli_cu == 2000
    cap = [Limit(LimitKind.COMPUTE_UNITS, 8000)]
    assert first_blocking(cap, h100(1), [h100(2)], {}, 600, 0, "CNY", NOW) is not None
    assert (
        first_blocking(cap, claim_of(1, "A100-80G", FLEET), [h100(2)], {}, 600, 0, "CNY", NOW)
        is None
    )


def test_a_card_hour_budget_must_cover_the_runway_and_names_its_reset() -> None:
    budget = [Limit(LimitKind.CARD_HOURS, 100 * 3600, "H100", Period.WEEK)]
    usage = {Period.WEEK: PeriodUsage({"H100": 100 * 3600 - 599, "A100-80G": 10**6}, 0)}
    blocked = first_blocking(budget, h100(1), [], usage, 600, 0, "CNY", NOW)
    assert blocked is not None and blocked.reason is Reason.WAITING_FOR_BUDGET
    assert "resets at 2026-11-30 00:00 UTC" in blocked.message
    assert first_blocking(budget, h100(1), [], usage, 599, 0, "CNY", NOW) is None


def test_a_spend_budget_counts_money_charged_this_period() -> None:
    budget = [Limit(LimitKind.SPEND, 10_000, None, Period.DAY)]  # 100.00 CNY a day
    usage = {Period.DAY: PeriodUsage({}, 9_000)}
    cost = 100 * SCALE  # 1.00 CNY a second
    assert first_blocking(budget, h100(1), [], usage, 10, cost, "CNY", NOW) is None
    blocked = first_blocking(budget, h100(1), [], usage, 11, cost, "CNY", NOW)
    assert blocked is not None and "10.00 CNY left" in blocked.message


def test_never_within_names_the_limit_a_job_can_never_fit() -> None:
    cap = [Limit(LimitKind.GPUS, 4, "H100")]
    assert "quota is at most 4 H100s at once" in (never_within(cap, h100(8), None, 0, "CNY") or "")
    assert never_within(cap, h100(4), None, 0, "CNY") is None
    budget = [Limit(LimitKind.CARD_HOURS, 3600, None, Period.DAY)]
    assert never_within(budget, h100(2), None, 0, "CNY") is None  # no max duration: may fit
    assert "whole budget" in (never_within(budget, h100(2), 1801, 0, "CNY") or "")
    zero = [Limit(LimitKind.SPEND, 0, None, Period.MONTH)]
    assert never_within(zero, h100(1), None, CENT_PER_SECOND, "CNY") is not None


def test_budget_stops_pick_the_jobs_that_spend_the_budget() -> None:
    budget = Limit(LimitKind.CARD_HOURS, 1000, "H100", Period.DAY)
    running = [Running("h", h100(2), 0), Running("a", claim_of(4, "A100-80G", FLEET), 0)]
    near = {Period.DAY: PeriodUsage({"H100": 990}, 0)}
    assert budget_stops([budget], near, running, 5.0) == [(budget, ["h"])]
    assert budget_stops([budget], near, running, 4.0) == []
    spend = Limit(LimitKind.SPEND, 1000, None, Period.DAY)
    spent = {Period.DAY: PeriodUsage({}, 1000)}
    assert budget_stops([spend], spent, running, 1.0) == [(spend, ["h", "a"])]


@given(
    cap=st.integers(0, 12),
    jobs=st.lists(
        st.tuples(st.integers(1, 8), st.sampled_from(["H100", "A100-80G", None])), max_size=30
    ),
)
def test_admitting_one_by_one_never_exceeds_any_cap(
    cap: int, jobs: list[tuple[int, str | None]]
) -> None:
    limits = [Limit(LimitKind.GPUS, cap, "H100"), Limit(LimitKind.GPUS, cap + 4)]
    held: list[Claim] = []
    for gpus, model in jobs:
        claim = claim_of(gpus, model, FLEET)
        if first_blocking(limits, claim, held, {}, 600, 0, "CNY", NOW) is None:
            held.append(claim)
    for limit in limits:
        assert used(limit, held, PeriodUsage({}, 0)) <= limit.amount


def test_budgets_warn_from_eighty_percent_and_caps_never() -> None:
    budget = Limit(LimitKind.CARD_HOURS, 1000, None, Period.DAY)
    assert not nearly_spent(budget, 799)
    assert nearly_spent(budget, 800)
    assert not nearly_spent(Limit(LimitKind.GPUS, 10), 10)
