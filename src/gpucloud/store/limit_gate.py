"""Checks jobs against their tenants' limits, for submit, admission, dry runs and metering."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.billing.limits import (
    NO_USAGE,
    Blocked,
    Claim,
    Limit,
    Period,
    PeriodUsage,
    Running,
    budget_stops,
    claim_of,
    first_blocking,
    nearly_spent,
    never_within,
    used,
)
from gpucloud.billing.pricing import Footprint, PriceVersion, units_per_second, version_at
from gpucloud.core.states import JobState
from gpucloud.store.billing import footprint_of, priced_footprint
from gpucloud.store.inventory import fleet_models
from gpucloud.store.limits import held_claims, job_claim, limits_of, period_usage
from gpucloud.store.models import Allocation, Job
from gpucloud.store.prices import load_versions
from gpucloud.store.settings import get_setting

DEFAULT_CURRENCY = "CNY"


class LimitGate:
    """One session's view of tenants' limits and usage, loaded lazily and cached. It remembers
    the jobs it admitted, so one admission pass cannot put two jobs into the same headroom."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        versions = load_versions(session)
        self.version: PriceVersion | None = version_at(versions, now) if versions else None
        self.runway_s = max(1, int(get_setting(session, "billing.admission_runway_seconds")))
        self._limits: dict[str, list[Limit]] = {}
        self._held: dict[str, list[Claim]] = {}
        self._usage: dict[str, dict[Period, PeriodUsage]] = {}
        self._models: set[str] | None = None

    @property
    def currency(self) -> str:
        return self.version.currency if self.version else DEFAULT_CURRENCY

    def limits(self, tenant_id: str) -> list[Limit]:
        if tenant_id not in self._limits:
            self._limits[tenant_id] = limits_of(self.session, tenant_id)
        return self._limits[tenant_id]

    def never(self, tenant_id: str, fp: Footprint, max_duration_s: int | None) -> str | None:
        """Why the job can never run under the tenant's limits; None if it can."""
        limits = self.limits(tenant_id)
        if not limits:
            return None
        claim, units = self._claim(fp)
        return never_within(limits, claim, max_duration_s, units, self.currency)

    def blocking(self, tenant_id: str, fp: Footprint, max_duration_s: int | None) -> Blocked | None:
        """The limit that keeps the job from being admitted now; None when it may go."""
        limits = self.limits(tenant_id)
        if not limits:
            return None
        claim, units = self._claim(fp)
        runway = self.runway_s if max_duration_s is None else min(self.runway_s, max_duration_s)
        return first_blocking(
            limits,
            claim,
            self._held_by(tenant_id),
            self._period_usage(tenant_id),
            runway,
            units,
            self.currency,
            self.now,
        )

    def usage(self, tenant_id: str) -> list[tuple[Limit, int]]:
        """Each limit with what counts against it now: held GPUs, or use this period."""
        return [
            (
                limit,
                used(
                    limit,
                    self._held_by(tenant_id),
                    self._period_usage(tenant_id).get(limit.period, NO_USAGE)
                    if limit.period
                    else NO_USAGE,
                ),
            )
            for limit in self.limits(tenant_id)
        ]

    def admitted(self, tenant_id: str, fp: Footprint) -> None:
        if self.limits(tenant_id):
            self._held_by(tenant_id).append(self._claim(fp)[0])

    def nearly_spent(self, tenant_id: str) -> list[tuple[Limit, int]]:
        """Budgets of the tenant used past the warning mark, with their use this period."""
        return [(lim, taken) for lim, taken in self.usage(tenant_id) if nearly_spent(lim, taken)]

    def budget_stops(self, tenant_id: str, horizon_s: float) -> list[tuple[Limit, list[str]]]:
        """Budgets the tenant's running jobs would overrun within ``horizon_s``, with those jobs."""
        limits = [limit for limit in self.limits(tenant_id) if limit.period is not None]
        if not limits or self.version is None:
            return []
        models = self._fleet_models()
        running = [
            Running(job.id, job_claim(self.session, job, models), self._claim(footprint_of(job))[1])
            for job in self.session.scalars(
                select(Job)
                .join(Allocation, Allocation.job_id == Job.id)
                .where(
                    Job.tenant_id == tenant_id,
                    Job.state.in_([JobState.STARTING, JobState.RUNNING]),
                    Allocation.active,
                    Allocation.started_at.is_not(None),
                )
            )
        ]
        return budget_stops(limits, self._period_usage(tenant_id), running, horizon_s)

    def _claim(self, fp: Footprint) -> tuple[Claim, int]:
        claim = claim_of(fp.gpus, fp.gpu_model, self._fleet_models())
        if self.version is None:
            return claim, 0
        priced = priced_footprint(self.session, self.version, fp)
        return claim, units_per_second(self.version, priced)

    def _fleet_models(self) -> set[str]:
        if self._models is None:
            self._models = fleet_models(self.session, 1)
        return self._models

    def _held_by(self, tenant_id: str) -> list[Claim]:
        if tenant_id not in self._held:
            self._held[tenant_id] = held_claims(self.session, tenant_id)
        return self._held[tenant_id]

    def _period_usage(self, tenant_id: str) -> dict[Period, PeriodUsage]:
        if tenant_id not in self._usage:
            periods = [lim.period for lim in self.limits(tenant_id) if lim.period is not None]
            self._usage[tenant_id] = period_usage(
                self.session, tenant_id, periods, self.currency, self.now
            )
        return self._usage[tenant_id]
