"""Per-tenant limits, decided purely: caps on GPUs held at once (of one model, of any, or in
compute units) and budgets over calendar periods (card-hours or money per day, week or month).

The store supplies what a tenant holds and has used; these functions say whether a job may be
admitted, whether it could ever be, and which running jobs a spent budget must stop.

Caps count every admitted, unfinished job (Kueue's "quota reserved at admission"), so a tenant
cannot slip past a cap by queueing. A job that asks for any GPU may land on any model of the
fleet, so it counts against every per-model cap and at the heaviest compute-unit weight: limits
are never exceeded, at the price of being strict for jobs that name no model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from gpucloud.billing.money import Money, parse_amount
from gpucloud.billing.pricing import SCALE
from gpucloud.core.catalog import find_model, resolve_model
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.states import Reason

MILLI = 1000  # compute units are stored in thousandths: the catalog's weights have one decimal


class LimitKind(StrEnum):
    GPUS = "gpus"  # GPUs held at once, of ``model`` or of any model
    COMPUTE_UNITS = "compute-units"  # GPUs held at once, weighted by the catalog
    CARD_HOURS = "card-hours"  # GPU time per period, of ``model`` or of any model
    SPEND = "spend"  # money charged from the wallet per period

    @property
    def is_budget(self) -> bool:
        return self in (LimitKind.CARD_HOURS, LimitKind.SPEND)


class Period(StrEnum):
    """Calendar periods in UTC; weeks start on Monday."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"

    def start(self, now: datetime) -> datetime:
        day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        if self is Period.DAY:
            return day
        if self is Period.WEEK:
            return day - timedelta(days=day.weekday())
        return day.replace(day=1)

    def end(self, now: datetime) -> datetime:
        start = self.start(now)
        if self is Period.DAY:
            return start + timedelta(days=1)
        if self is Period.WEEK:
            return start + timedelta(weeks=1)
        return (start + timedelta(days=32)).replace(day=1)


@dataclass(frozen=True)
class Limit:
    kind: LimitKind
    amount: int  # GPUs, milli compute units, card-seconds, or minor units of money
    model: str | None = None  # only for GPUS and CARD_HOURS; None means any model
    period: Period | None = None  # only, and always, for budgets

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise InvalidRequest("a limit cannot be negative", "amount")
        if self.model is not None and self.kind not in (LimitKind.GPUS, LimitKind.CARD_HOURS):
            raise InvalidRequest(f"a {self.kind} limit cannot name a GPU model", "model")
        if self.kind.is_budget and self.period is None:
            raise InvalidRequest(
                f"a {self.kind} budget needs a period: day, week or month", "period"
            )
        if not self.kind.is_budget and self.period is not None:
            raise InvalidRequest(
                f"a {self.kind} cap holds at every moment: drop the period", "period"
            )

    @property
    def key(self) -> str:
        """One limit per kind, model and period: setting it again replaces it."""
        return f"{self.kind}:{self.model or '*'}:{self.period or 'now'}"

    def applies_to(self, models: frozenset[str]) -> bool:
        return self.model is None or self.model in models

    def show(self, amount: int, currency: str) -> str:
        """``amount`` in this limit's unit, as a person reads it."""
        if self.kind is LimitKind.GPUS:
            return f"{amount} {self.model or 'GPU'}{'s' if amount != 1 else ''}"
        if self.kind is LimitKind.COMPUTE_UNITS:
            return f"{amount / MILLI:g} compute units"
        if self.kind is LimitKind.CARD_HOURS:
            of = f" of {self.model}" if self.model else ""
            return f"{amount / 3600:.2f} card-hours{of}"
        return str(Money(amount, currency))

    def describe(self, currency: str) -> str:
        if self.period is None:
            return f"at most {self.show(self.amount, currency)} at once"
        return f"{self.show(self.amount, currency)} per {self.period}"


@dataclass(frozen=True)
class Claim:
    """GPUs a job holds, or may hold once placed."""

    gpus: int
    models: frozenset[str]  # the model it runs on, or every model it may land on
    milli_cu: int


def milli_cu(model: str) -> int:
    found = find_model(model)
    return round(found.weight * MILLI) if found is not None else MILLI


def claim_of(gpus: int, model: str | None, fleet_models: Iterable[str]) -> Claim:
    models = frozenset([model] if model else fleet_models)
    weight = max((milli_cu(m) for m in models), default=MILLI)
    return Claim(gpus, models, gpus * weight if gpus else 0)


@dataclass(frozen=True)
class PeriodUsage:
    card_seconds: Mapping[str, int]  # model -> GPU-seconds run in the period so far
    spend_minor: int  # money charged from the wallet in the period so far


NO_USAGE = PeriodUsage({}, 0)


def used(limit: Limit, held: Iterable[Claim], usage: PeriodUsage) -> int:
    if limit.kind is LimitKind.GPUS:
        return sum(c.gpus for c in held if limit.applies_to(c.models))
    if limit.kind is LimitKind.COMPUTE_UNITS:
        return sum(c.milli_cu for c in held)
    if limit.kind is LimitKind.CARD_HOURS:
        return sum(s for m, s in usage.card_seconds.items() if limit.model in (None, m))
    return usage.spend_minor


def need(limit: Limit, claim: Claim, seconds: int, units_per_s: int) -> int:
    """What a job adds to a limit: its GPUs for a cap, its use over ``seconds`` for a budget."""
    if limit.kind is LimitKind.GPUS:
        return claim.gpus if limit.applies_to(claim.models) else 0
    if limit.kind is LimitKind.COMPUTE_UNITS:
        return claim.milli_cu
    if limit.kind is LimitKind.CARD_HOURS:
        return claim.gpus * seconds if limit.applies_to(claim.models) else 0
    return -(-units_per_s * seconds // SCALE)


def never_within(
    limits: Iterable[Limit],
    claim: Claim,
    max_duration_s: int | None,
    units_per_s: int,
    currency: str,
) -> str | None:
    """Why a job can never run under these limits, even with nothing else running."""
    for limit in limits:
        if limit.period is None:
            wanted = need(limit, claim, 0, units_per_s)
            if wanted > limit.amount:
                return (
                    f"it needs {limit.show(wanted, currency)} at once and the tenant's quota "
                    f"is {limit.describe(currency)}"
                )
        elif limit.amount == 0 and need(limit, claim, 1, units_per_s):
            return f"the tenant's budget is {limit.describe(currency)}"
        elif max_duration_s is not None:
            wanted = need(limit, claim, max_duration_s, units_per_s)
            if wanted > limit.amount:
                return (
                    f"its max duration needs {limit.show(wanted, currency)}, more than the "
                    f"whole budget of {limit.describe(currency)}"
                )
    return None


@dataclass(frozen=True)
class Blocked:
    limit: Limit
    reason: Reason  # WAITING_FOR_QUOTA or WAITING_FOR_BUDGET
    message: str


def first_blocking(
    limits: Iterable[Limit],
    claim: Claim,
    held: Sequence[Claim],
    usage: Mapping[Period, PeriodUsage],
    runway_s: int,
    units_per_s: int,
    currency: str,
    now: datetime,
) -> Blocked | None:
    """The first limit that admitting the job now would break. A budget must cover the job's
    runway (as the wallet must), so that an admitted job is not stopped moments later."""
    for limit in limits:
        wanted = need(limit, claim, runway_s, units_per_s)
        if not wanted:
            continue
        period_usage = usage.get(limit.period, NO_USAGE) if limit.period else NO_USAGE
        taken = used(limit, held, period_usage)
        if taken + wanted <= limit.amount:
            continue
        if limit.period is None:
            message = (
                f"the quota allows {limit.describe(currency)}: "
                f"{limit.show(taken, currency)} already admitted or running and this job needs "
                f"{limit.show(wanted, currency)}; it starts when some finish"
            )
            return Blocked(limit, Reason.WAITING_FOR_QUOTA, message)
        left = max(0, limit.amount - taken)
        message = (
            f"the budget of {limit.describe(currency)} has {limit.show(left, currency)} left "
            f"and this job needs {limit.show(wanted, currency)} for its first {runway_s}s; "
            f"it resets at {limit.period.end(now):%Y-%m-%d %H:%M} UTC"
        )
        return Blocked(limit, Reason.WAITING_FOR_BUDGET, message)
    return None


WARN_AT_PCT = 80  # a budget this far spent warns its tenant, once per period


def nearly_spent(limit: Limit, taken: int) -> bool:
    return limit.period is not None and taken * 100 >= limit.amount * WARN_AT_PCT


@dataclass(frozen=True)
class Running:
    """A running job, as budgets see it."""

    job_id: str
    claim: Claim
    units_per_s: int  # what it costs per second, in 1/SCALE minor units


def budget_stops(
    limits: Iterable[Limit],
    usage: Mapping[Period, PeriodUsage],
    running: Sequence[Running],
    horizon_s: float,
) -> list[tuple[Limit, list[str]]]:
    """Budgets that would be overrun within ``horizon_s`` (the time a stop takes) at the current
    burn, each with the running jobs that spend it: stopping them now bounds the overrun."""
    seconds = math.ceil(horizon_s)
    stops = []
    for limit in limits:
        if limit.period is None:
            continue
        spenders = [r for r in running if need(limit, r.claim, 1, SCALE)]
        if not spenders:
            continue
        taken = used(limit, [], usage.get(limit.period, NO_USAGE))
        if limit.kind is LimitKind.SPEND:
            burn = sum(r.units_per_s for r in spenders) * seconds
            over = taken * SCALE + burn >= limit.amount * SCALE
        else:
            over = taken + sum(r.claim.gpus for r in spenders) * seconds >= limit.amount
        if over:
            stops.append((limit, [r.job_id for r in spenders]))
    return stops


def parse_limit(
    kind: LimitKind, value: str, model: str | None, period: Period | None, currency: str
) -> Limit:
    """A limit as an operator types it: '4' GPUs, '12.8' compute units, '100' card-hours,
    '5000.00' of money. Fractions finer than the unit allows are refused, never rounded."""
    name = resolve_model(model).name if model else None
    if kind is LimitKind.SPEND:
        return Limit(kind, parse_amount(value, currency, "value").minor, name, period)
    scale = {LimitKind.GPUS: 1, LimitKind.COMPUTE_UNITS: MILLI, LimitKind.CARD_HOURS: 3600}[kind]
    try:
        number = Decimal(value.strip()) * scale
    except InvalidOperation:
        raise InvalidRequest(f"value: {value!r} is not a number", "value") from None
    if not number.is_finite() or number != number.to_integral_value():
        finest = {1: "whole GPUs", MILLI: "0.001 compute units", 3600: "whole card-seconds"}
        raise InvalidRequest(f"value: {value!r} is finer than {finest[scale]}", "value")
    return Limit(kind, int(number), name, period)
