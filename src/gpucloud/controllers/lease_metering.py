"""Charges every metered lease (volumes, stopped instances' disks, bare-metal servers) for
each whole second it was held.

Crash safety, as for allocations: a lease's ``charged_until`` and ``remainder`` move in the
transaction that posts the charge, whose key names the exact range of seconds
("lease:LSE:0-60"), so a restart neither skips nor repeats a second. A wallet may go below
zero on leases (data is never deleted for want of money); the tenant is told once, when its
balance crosses zero, and the product holding the lease decides what to stop
(``store.leases.tenants_in_debt``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind, rate_lease
from gpucloud.billing.ledger import AccountKind, LedgerTx, TxKind, move, system_account
from gpucloud.billing.ledger import wallet_account as wallet_of
from gpucloud.billing.pricing import PriceVersion, version_at
from gpucloud.controllers.context import Context
from gpucloud.store import ledger
from gpucloud.store.leases import unsettled
from gpucloud.store.models import MeteredLease
from gpucloud.store.prices import load_versions
from gpucloud.store.settings import get_setting
from gpucloud.store.transitions import record_event


class LeaseMeteringController:
    name = "lease-metering"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            interval = int(get_setting(session, "billing.metering_interval_seconds"))
            due = [lease.id for lease in unsettled(session) if _due(lease, now, interval)]
        if not due:
            return
        with self.ctx.db.write() as session:
            versions = load_versions(session)
            if not versions:
                return
            txs = [tx for lease_id in due if (tx := _charge(session, lease_id, versions, now))]
            before = {tx.tenant_id: _balance(session, tx.tenant_id, versions, now) for tx in txs}
            written = ledger.post(session, txs, now)
            if len(written) != len(txs):  # a key already charged: the lease disagrees
                raise RuntimeError("a lease was behind the ledger; refusing to charge twice")
            for tenant, was in sorted(before.items(), key=lambda item: str(item[0])):
                assert tenant is not None
                if was >= 0 > _balance(session, tenant, versions, now):
                    _tell_in_debt(session, tenant, now)


def _end(lease: MeteredLease, now: datetime) -> datetime:
    return now if lease.ended_at is None else min(lease.ended_at, now)


def _seconds_due(lease: MeteredLease, now: datetime) -> int:
    held = int((_end(lease, now) - lease.started_at).total_seconds())
    charged = int((lease.charged_until - lease.started_at).total_seconds())
    return max(0, held - charged)


def _due(lease: MeteredLease, now: datetime, interval: int) -> bool:
    """Ended leases settle now; open ones are charged once per interval, to the second."""
    return (lease.ended_at is not None and lease.ended_at <= now) or _seconds_due(
        lease, now
    ) >= interval


def _charge(
    session: Session, lease_id: str, versions: list[PriceVersion], now: datetime
) -> LedgerTx | None:
    lease = session.get_one(MeteredLease, lease_id)
    seconds = _seconds_due(lease, now)
    first = int((lease.charged_until - lease.started_at).total_seconds())
    lease.settled = lease.ended_at is not None and lease.ended_at <= now
    if not seconds:
        return None
    charge = rate_lease(
        LeaseKind(lease.kind),
        lease.item,
        lease.quantity,
        lease.charged_until,
        seconds,
        versions,
        lease.remainder,
    )
    lease.charged_until += timedelta(seconds=seconds)
    lease.remainder = charge.remainder
    lease.charged_minor += charge.money_minor
    if not charge.money_minor:
        return None
    currency = version_at(versions, lease.started_at).currency
    return LedgerTx(
        f"lease:{lease.id}:{first}-{first + seconds}",
        TxKind.CHARGE,
        tuple(
            move(
                wallet_of(lease.tenant_id, currency),
                system_account(AccountKind.REVENUE, currency),
                charge.money_minor,
            )
        ),
        tenant_id=lease.tenant_id,
        memo=f"{seconds}s of {lease.quantity} {lease.kind} ({lease.item}) for {lease.ref_id}",
    )


def _balance(
    session: Session, tenant: str | None, versions: list[PriceVersion], now: datetime
) -> int:
    assert tenant is not None
    return ledger.balance(session, wallet_of(tenant, version_at(versions, now).currency).id)


def _tell_in_debt(session: Session, tenant: str, now: datetime) -> None:
    record_event(
        session,
        at=now,
        object_kind="tenant",
        object_id=tenant,
        kind="wallet.in_debt",
        tenant_id=tenant,
        reason="INSUFFICIENT_FUNDS",
        message="the wallet is below zero: volumes and leased servers keep accruing charges; "
        "top up to keep them",
    )
