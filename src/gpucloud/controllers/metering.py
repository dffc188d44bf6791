"""Charges every running allocation for each second it ran, and stops work at an empty wallet.

Crash safety: an allocation's meter (seconds charged, carried remainder) moves in the same
transaction as the ledger transaction that charges those seconds, and that transaction's key
names the exact range ("meter:ALLOC:120-121"), so a restart neither skips nor repeats a second.
The operator tenant's own jobs are internal use and not charged.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gpucloud.billing.funds import must_stop, seconds_left
from gpucloud.billing.ledger import (
    AccountKind,
    LedgerTx,
    Posting,
    TxKind,
    card_unit,
    move,
    package_account,
    system_account,
    wallet_account,
)
from gpucloud.billing.pricing import Footprint, PriceVersion, Tier, rate, version_at
from gpucloud.controllers.context import Context
from gpucloud.core.lifecycle import StopReason
from gpucloud.core.states import JobState, Reason
from gpucloud.store import ledger
from gpucloud.store.billing import holdings, running_footprints
from gpucloud.store.inventory import allocation_gpu_model
from gpucloud.store.jobs import request_stop
from gpucloud.store.limit_gate import LimitGate
from gpucloud.store.limits import mark_warned
from gpucloud.store.models import Allocation, AllocationMeter, Job, LedgerAccount, Tenant
from gpucloud.store.prices import load_versions
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event

log = logging.getLogger("gpucloud.metering")


@dataclass
class _Batch:
    """What one pass charges: written as one batch, in the transaction that moves the meters."""

    versions: list[PriceVersion]
    txs: list[LedgerTx] = field(default_factory=list)
    tenants: set[str] = field(default_factory=set)
    # Package card-seconds this pass already used, so two allocations of one tenant cannot
    # both spend the same package balance.
    package_used: dict[str, int] = field(default_factory=lambda: defaultdict(int))


class MeteringController:
    name = "metering"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            interval = int(get_setting(session, "billing.metering_interval_seconds"))
            versions = load_versions(session)
            due = self._due(session, now, interval)
        if not versions or not due:
            return
        with self.ctx.db.write() as session:
            batch = _Batch(versions)
            for allocation_id in due:
                self._meter(session, allocation_id, batch, now)
            written = ledger.post(session, batch.txs, now)
            if len(written) != len(batch.txs):  # a key already charged: the meter disagrees
                raise RuntimeError("a meter was behind the ledger; refusing to charge twice")
            self._check_funds(session, batch.tenants, version_at(versions, now), interval, now)
            self._check_budgets(session, batch.tenants, interval, now)

    def _due(self, session: Session, now: datetime, interval: int) -> list[str]:
        """Allocations with at least one interval to charge, or that ended and are not closed."""
        rows = session.execute(
            select(
                Allocation.id,
                Allocation.started_at,
                Allocation.released_at,
                Allocation.active,
                AllocationMeter.metered_seconds,
            )
            .join(Job, Job.id == Allocation.job_id)
            .join(Tenant, Tenant.id == Job.tenant_id)
            .outerjoin(AllocationMeter, AllocationMeter.allocation_id == Allocation.id)
            .where(
                Allocation.started_at.is_not(None),
                ~Tenant.is_operator,
                or_(Allocation.active, AllocationMeter.final.is_(None), ~AllocationMeter.final),
            )
        )
        due = []
        for allocation_id, started, released, active, metered in rows:
            if started is None:  # excluded by the query; narrows the type
                continue
            end = self._charge_until(allocation_id, active, released, now) or started
            unmetered = int((end - started).total_seconds()) - (metered or 0)
            if not active or unmetered >= interval:  # batch: once per interval, to the second
                due.append(allocation_id)
        return due

    def _meter(self, session: Session, allocation_id: str, batch: _Batch, now: datetime) -> None:
        allocation = session.get_one(Allocation, allocation_id)
        job = session.get_one(Job, allocation.job_id)
        meter = session.get(AllocationMeter, allocation.id) or self._new_meter(
            session, allocation, job
        )
        if meter.final:
            return
        assert allocation.started_at is not None
        end = self._charge_until(allocation.id, allocation.active, allocation.released_at, now)
        ran = int(((end or allocation.started_at) - allocation.started_at).total_seconds())
        seconds = max(0, ran - meter.metered_seconds)
        meter.final = not allocation.active
        if not seconds:
            return
        tenant, model = job.tenant_id, meter.gpu_model
        start = meter.started_at + timedelta(seconds=meter.metered_seconds)
        package = package_account(tenant, model) if model else None
        package_left = 0
        if package is not None:
            package_left = ledger.balance(session, package.id) - batch.package_used[package.id]
        charge = rate(
            _footprint(meter), start, seconds, batch.versions, meter.remainder, max(0, package_left)
        )
        currency = version_at(batch.versions, start).currency
        postings: list[Posting] = []
        if charge.money_minor:
            postings += move(
                wallet_account(tenant, currency),
                system_account(AccountKind.REVENUE, currency),
                charge.money_minor,
            )
        if charge.package_card_seconds and package is not None and model is not None:
            batch.package_used[package.id] += charge.package_card_seconds
            postings += move(
                package,
                system_account(AccountKind.PACKAGE_USED, card_unit(model)),
                charge.package_card_seconds,
            )
        first = meter.metered_seconds
        if postings:
            batch.txs.append(
                LedgerTx(
                    f"meter:{allocation.id}:{first}-{first + seconds}",
                    TxKind.CHARGE,
                    tuple(postings),
                    tenant_id=tenant,
                    job_id=job.id,
                    memo=f"{seconds}s of {job.id}",
                )
            )
            batch.tenants.add(tenant)
        meter.metered_seconds += seconds
        meter.remainder = charge.remainder
        meter.charged_minor += charge.money_minor
        meter.card_seconds_from_packages += charge.package_card_seconds

    def _charge_until(self, allocation_id: str, active: bool, released: datetime | None,
                      now: datetime) -> datetime | None:
        """A released allocation to its end; a running one only to when the launcher last saw
        it running (controllers/run_watch.py), so a run that ended unseen is never charged
        past its end. None: nothing may be charged yet."""
        if not active and released is not None:
            return released
        seen = self.ctx.seen_running.until(allocation_id)
        return None if seen is None else min(now, seen)

    def _new_meter(self, session: Session, allocation: Allocation, job: Job) -> AllocationMeter:
        assert allocation.started_at is not None
        meter = AllocationMeter(
            allocation_id=allocation.id,
            tenant_id=job.tenant_id,
            job_id=job.id,
            gpu_model=allocation_gpu_model(session, allocation),
            gpus=len(allocation.device_ids),
            cpu_milli=allocation.cpu_milli,
            memory_mib=allocation.memory_mib,
            tier=job.tier,
            started_at=allocation.started_at,
            metered_seconds=0,
            remainder=0,
            charged_minor=0,
            card_seconds_from_packages=0,
            final=False,
        )
        session.add(meter)
        session.flush()
        return meter

    def _check_funds(
        self,
        session: Session,
        tenants: set[str],
        version: PriceVersion,
        interval: int,
        now: datetime,
    ) -> None:
        """Warn when a wallet runs low; stop the tenant's jobs before it runs out."""
        warn_s = int(get_setting(session, "billing.low_balance_warning_seconds"))
        horizon = self.ctx.tunables.funds_stop_grace_s + interval
        for tenant in sorted(tenants):
            held, running = holdings(session, tenant), running_footprints(session, tenant)
            if must_stop(held, version, running, horizon):
                self._stop_tenant_jobs(session, tenant, now)
            left = seconds_left(held, version, running)
            wallet = session.get(LedgerAccount, wallet_account(tenant, version.currency).id)
            if wallet is None:
                continue
            low = left is not None and left < warn_s
            if low and not wallet.low_balance_alerted:
                _tenant_event(
                    session,
                    tenant,
                    "wallet.low_balance",
                    "LOW_BALANCE",
                    f"the wallet lasts about {int(left or 0)}s at the current burn rate; "
                    "top up to keep jobs running",
                    now,
                )
            wallet.low_balance_alerted = low

    def _check_budgets(
        self, session: Session, tenants: set[str], interval: int, now: datetime
    ) -> None:
        """Warn once per period when a budget is nearly spent; stop the jobs that spend a
        budget before they overrun it."""
        gate = LimitGate(session, now)
        horizon = self.ctx.tunables.funds_stop_grace_s + interval
        for tenant in sorted(tenants):
            for limit, taken in gate.nearly_spent(tenant):
                assert limit.period is not None  # only budgets are ever nearly spent
                if mark_warned(session, tenant, limit, limit.period.start(now)):
                    _tenant_event(
                        session,
                        tenant,
                        "budget.low",
                        "BUDGET_LOW",
                        f"{limit.show(taken, gate.currency)} of the budget of "
                        f"{limit.describe(gate.currency)} used; jobs stop when it is spent",
                        now,
                    )
            for limit, job_ids in gate.budget_stops(tenant, horizon):
                spent = f"the budget of {limit.describe(gate.currency)} is spent"
                stopped = [
                    job.id
                    for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))
                    if request_stop(session, job, StopReason.BUDGET_EXHAUSTED, now, spent)
                ]
                if stopped:
                    log.info("stopping %s: %s for %s", stopped, spent, tenant)
                    _tenant_event(
                        session,
                        tenant,
                        "budget.exhausted",
                        Reason.BUDGET_EXHAUSTED.value,
                        f"{spent}: stopping {len(stopped)} job(s); it resets at "
                        f"{limit.period.end(now) if limit.period else now:%Y-%m-%d %H:%M} UTC",
                        now,
                    )

    def _stop_tenant_jobs(self, session: Session, tenant: str, now: datetime) -> None:
        jobs = session.scalars(
            select(Job).where(
                Job.tenant_id == tenant,
                Job.state.in_([JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING]),
            )
        )
        for job in jobs:
            if request_stop(
                session, job, StopReason.INSUFFICIENT_FUNDS, now, "the wallet is empty: stopping"
            ):
                log.info("stopping %s: wallet of %s is empty", job.id, tenant)


def _tenant_event(
    session: Session, tenant: str, kind: str, reason: str, message: str, now: datetime
) -> None:
    record_event(
        session,
        at=now,
        object_kind="tenant",
        object_id=tenant,
        kind=kind,
        tenant_id=tenant,
        reason=reason,
        message=message,
    )


def _footprint(meter: AllocationMeter) -> Footprint:
    return Footprint(
        meter.gpus, meter.gpu_model, meter.cpu_milli, meter.memory_mib, Tier(meter.tier)
    )
