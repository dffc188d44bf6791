"""Tenant limits in the database, and the usage they are measured against."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from gpucloud.billing.ledger import TxKind, wallet_account
from gpucloud.billing.limits import Claim, Limit, LimitKind, Period, PeriodUsage, claim_of
from gpucloud.core.states import JobState
from gpucloud.store.inventory import allocation_gpu_model, fleet_models
from gpucloud.store.models import Allocation, Job, LedgerPosting, LedgerTransaction, TenantLimit

ADMITTED = (JobState.QUEUED, JobState.SCHEDULED, JobState.STARTING, JobState.RUNNING)


def _limit(row: TenantLimit) -> Limit:
    return Limit(
        LimitKind(row.kind),
        row.amount,
        row.model,
        Period(row.period) if row.period else None,
    )


def set_limit(session: Session, tenant_id: str, limit: Limit, who: str, now: datetime) -> None:
    """Adds the limit, or replaces the one of the same kind, model and period."""
    session.merge(
        TenantLimit(
            tenant_id=tenant_id,
            key=limit.key,
            kind=limit.kind.value,
            model=limit.model,
            period=limit.period.value if limit.period else None,
            amount=limit.amount,
            updated_by=who,
            updated_at=now,
        )
    )


def remove_limit(session: Session, tenant_id: str, limit_key: str) -> bool:
    result = session.execute(
        delete(TenantLimit).where(TenantLimit.tenant_id == tenant_id, TenantLimit.key == limit_key)
    )
    return bool(getattr(result, "rowcount", 0))


def mark_warned(session: Session, tenant_id: str, limit: Limit, period_start: datetime) -> bool:
    """Record that the tenant was warned about this budget in this period; False if it already
    was (the guarded UPDATE makes two concurrent passes warn once)."""
    result = session.execute(
        update(TenantLimit)
        .where(
            TenantLimit.tenant_id == tenant_id,
            TenantLimit.key == limit.key,
            or_(TenantLimit.warned_period.is_(None), TenantLimit.warned_period < period_start),
        )
        .values(warned_period=period_start)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


def limits_of(session: Session, tenant_id: str) -> list[Limit]:
    rows = session.scalars(
        select(TenantLimit).where(TenantLimit.tenant_id == tenant_id).order_by(TenantLimit.key)
    )
    return [_limit(r) for r in rows]


def limits_by_tenant(session: Session, tenant_ids: Iterable[str]) -> dict[str, list[Limit]]:
    found: dict[str, list[Limit]] = defaultdict(list)
    rows = session.scalars(
        select(TenantLimit)
        .where(TenantLimit.tenant_id.in_(list(tenant_ids)))
        .order_by(TenantLimit.key)
    )
    for row in rows:
        found[row.tenant_id].append(_limit(row))
    return dict(found)


def job_claim(session: Session, job: Job, models: Iterable[str]) -> Claim:
    """What a job holds: the model of its allocation once placed, else what it may land on."""
    allocation = session.scalar(
        select(Allocation).where(Allocation.job_id == job.id, Allocation.active)
    )
    model = allocation_gpu_model(session, allocation) if allocation is not None else None
    return claim_of(job.gpus * job.nodes, model or job.gpu_type, models)


def held_claims(session: Session, tenant_id: str) -> list[Claim]:
    """GPUs of the tenant's admitted, unfinished jobs: what its caps count."""
    jobs = list(
        session.scalars(
            select(Job).where(Job.tenant_id == tenant_id, Job.state.in_(ADMITTED), Job.gpus > 0)
        )
    )
    models = fleet_models(session, 1) if jobs else set()
    return [job_claim(session, job, models) for job in jobs]


def period_usage(
    session: Session, tenant_id: str, periods: Iterable[Period], currency: str, now: datetime
) -> dict[Period, PeriodUsage]:
    return {p: _usage_since(session, tenant_id, p.start(now), currency, now) for p in set(periods)}


def _usage_since(
    session: Session, tenant_id: str, start: datetime, currency: str, now: datetime
) -> PeriodUsage:
    """GPU-seconds run since ``start`` (from the allocations, to the second, so a job that spans
    the period boundary counts only its part inside) and money charged since ``start``."""
    card_seconds: dict[str, int] = defaultdict(int)
    allocations = session.scalars(
        select(Allocation)
        .join(Job, Job.id == Allocation.job_id)
        .where(
            Job.tenant_id == tenant_id,
            Allocation.started_at.is_not(None),
            or_(Allocation.released_at.is_(None), Allocation.released_at > start),
        )
    )
    for allocation in allocations:
        model = allocation_gpu_model(session, allocation)
        if model is None or allocation.started_at is None:
            continue
        end = allocation.released_at or now
        seconds = int((min(end, now) - max(allocation.started_at, start)).total_seconds())
        card_seconds[model] += len(allocation.device_ids) * max(0, seconds)
    wallet = wallet_account(tenant_id, currency).id
    charged = session.scalar(
        select(func.coalesce(func.sum(LedgerPosting.amount), 0))
        .join(LedgerTransaction, LedgerTransaction.key == LedgerPosting.transaction_key)
        .where(
            and_(
                LedgerTransaction.tenant_id == tenant_id,
                LedgerTransaction.kind == TxKind.CHARGE.value,
                LedgerTransaction.at >= start,
                LedgerPosting.account_id == wallet,
            )
        )
    )
    return PeriodUsage(dict(card_seconds), -int(charged or 0))
