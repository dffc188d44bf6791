"""Money per day from the ledger (exact: the postings themselves), for the console's charts.

A tenant's spend is what metering charged its wallet; the operator's revenue is what reached
the revenue accounts (charges and package sales). Days are UTC days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.billing.ledger import AccountKind, TxKind, wallet_account
from gpucloud.store.models import LedgerAccount, LedgerPosting, LedgerTransaction


@dataclass(frozen=True)
class Day:
    day: date
    minor: int  # money in minor units


def days_back(now: datetime, days: int) -> tuple[datetime, list[date]]:
    """The start of the first of the last ``days`` UTC days (today included), and those days."""
    today = now.date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    return start, [first + timedelta(days=i) for i in range(days)]


def _day_of(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)  # SQLite keeps UTC text: its date() is the UTC day


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _fill(days: Iterable[date], totals: dict[date, int]) -> list[Day]:
    return [Day(d, totals.get(d, 0)) for d in days]


def tenant_spend(
    session: Session, tenant_id: str, currency: str, now: datetime, days: int
) -> list[Day]:
    """What metering charged the tenant's wallet, per day."""
    start, wanted = days_back(now, days)
    day = _day_of(session, LedgerTransaction.at)
    rows = session.execute(
        select(day, func.sum(LedgerPosting.amount))
        .join(LedgerTransaction, LedgerTransaction.key == LedgerPosting.transaction_key)
        .where(
            LedgerTransaction.tenant_id == tenant_id,
            LedgerTransaction.at >= start,
            LedgerTransaction.kind == TxKind.CHARGE.value,
            LedgerPosting.account_id == wallet_account(tenant_id, currency).id,
        )
        .group_by(day)
    )
    return _fill(wanted, {_as_date(d): -int(total or 0) for d, total in rows})


def revenue(session: Session, now: datetime, days: int) -> list[Day]:
    """Money that reached the operator's revenue accounts, per day."""
    start, wanted = days_back(now, days)
    accounts = list(
        session.scalars(
            select(LedgerAccount.id).where(LedgerAccount.kind == AccountKind.REVENUE.value)
        )
    )
    if not accounts:
        return _fill(wanted, {})
    day = _day_of(session, LedgerTransaction.at)
    rows = session.execute(
        select(day, func.sum(LedgerPosting.amount))
        .join(LedgerTransaction, LedgerTransaction.key == LedgerPosting.transaction_key)
        .where(LedgerTransaction.at >= start, LedgerPosting.account_id.in_(accounts))
        .group_by(day)
    )
    return _fill(wanted, {_as_date(d): int(total or 0) for d, total in rows})
