"""Metered leases in the database: opened, resized and ended by the product that holds the
thing (in the transaction that changes that thing's state), charged by
``controllers.lease_metering``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind
from gpucloud.store.models import LedgerAccount, MeteredLease, Tenant


def open_lease(
    session: Session,
    *,
    lease_id: str,
    tenant_id: str,
    kind: LeaseKind,
    ref_id: str,
    item: str,
    quantity: int,
    at: datetime,
) -> MeteredLease:
    """Start charging ``tenant_id`` for ``quantity`` units of ``item`` from ``at``."""
    if quantity <= 0:
        raise ValueError(f"a lease holds a positive quantity, not {quantity}")
    lease = MeteredLease(
        id=lease_id,
        tenant_id=tenant_id,
        kind=kind.value,
        ref_id=ref_id,
        item=item,
        quantity=quantity,
        started_at=at,
        ended_at=None,
        charged_until=at,
        remainder=0,
        charged_minor=0,
        settled=False,
    )
    session.add(lease)
    session.flush()
    return lease


def open_lease_of(session: Session, ref_id: str) -> MeteredLease | None:
    return session.scalar(
        select(MeteredLease).where(MeteredLease.ref_id == ref_id, MeteredLease.ended_at.is_(None))
    )


def end_leases(session: Session, ref_id: str, at: datetime) -> int:
    """Stop charging for ``ref_id`` from ``at``; the meter still charges up to ``at``."""
    ended = 0
    for lease in session.scalars(
        select(MeteredLease).where(MeteredLease.ref_id == ref_id, MeteredLease.ended_at.is_(None))
    ):
        lease.ended_at = max(at, lease.started_at)
        ended += 1
    session.flush()
    return ended


def resize_lease(
    session: Session, *, lease_id: str, ref_id: str, quantity: int, at: datetime
) -> MeteredLease:
    """From ``at`` on, charge ``quantity`` units instead (e.g. a grown volume)."""
    current = open_lease_of(session, ref_id)
    if current is None:
        raise LookupError(f"no open lease for {ref_id}")
    end_leases(session, ref_id, at)
    return open_lease(
        session,
        lease_id=lease_id,
        tenant_id=current.tenant_id,
        kind=LeaseKind(current.kind),
        ref_id=ref_id,
        item=current.item,
        quantity=quantity,
        at=at,
    )


def unsettled(session: Session) -> list[MeteredLease]:
    """Leases the meter has yet to charge in full (open, or ended and not charged to the end),
    of tenants that pay (the operator's own use is internal)."""
    return list(
        session.scalars(
            select(MeteredLease)
            .join(Tenant, Tenant.id == MeteredLease.tenant_id)
            .where(~MeteredLease.settled, ~Tenant.is_operator)
            .order_by(MeteredLease.id)
        )
    )


def tenants_in_debt(session: Session) -> set[str]:
    """Tenants holding open leases whose wallet is below zero: leases keep accruing charges
    (data is never deleted for want of money), so the holder decides what to stop."""
    rows = session.execute(
        select(MeteredLease.tenant_id)
        .join(LedgerAccount, LedgerAccount.id == "wallet:" + MeteredLease.tenant_id)
        .where(MeteredLease.ended_at.is_(None), LedgerAccount.balance < 0)
        .distinct()
    )
    return {tenant for (tenant,) in rows}
