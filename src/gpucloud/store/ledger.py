"""The ledger in the database: idempotent transactions, atomic balances, and verification."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Table, func, select
from sqlalchemy.orm import Session

from gpucloud.billing.ledger import Account, LedgerTx, check
from gpucloud.store import bulk
from gpucloud.store.models import LedgerAccount, LedgerPosting, LedgerTransaction


def ensure_accounts(session: Session, accounts: Sequence[Account], now: datetime) -> None:
    ids = {a.id for a in accounts}
    known = set(session.scalars(select(LedgerAccount.id).where(LedgerAccount.id.in_(ids))))
    for account in {a.id: a for a in accounts}.values():
        if account.id not in known:
            session.add(
                LedgerAccount(
                    id=account.id,
                    kind=account.kind.value,
                    tenant_id=account.tenant_id,
                    unit=account.unit,
                    balance=0,
                    low_balance_alerted=False,
                    created_at=now,
                )
            )
    session.flush()


def post(session: Session, txs: Sequence[LedgerTx], now: datetime) -> list[LedgerTx]:
    """Write the transactions whose keys are new; returns those written (replays are skipped).

    Balances move by ``balance = balance + x`` in the database, which serialises concurrent
    increments: no update is lost (there is no read-modify-write in Python).
    """
    if not txs:
        return []
    for tx in txs:
        check(tx)
    unique = list({tx.key: tx for tx in txs}.values())
    connection = session.connection()
    ensure_accounts(session, [p.account for tx in unique for p in tx.postings], now)
    at = bulk.bind_value(connection, _TX_TABLE, "at", now)
    written = bulk.insert_new(
        connection,
        _TX_TABLE,
        _TX_COLUMNS,
        [(tx.key, tx.kind.value, tx.tenant_id, tx.job_id, tx.memo, at) for tx in unique],
        "key",
    )
    fresh = [tx for tx in unique if tx.key in written]
    bulk.insert_all(
        connection,
        _POSTING_TABLE,
        _POSTING_COLUMNS,
        [(tx.key, p.account.id, p.amount) for tx in fresh for p in tx.postings],
    )
    deltas: dict[str, int] = defaultdict(int)
    for tx in fresh:
        for p in tx.postings:
            deltas[p.account.id] += p.amount
    bulk.add_to(connection, _ACCOUNTS, "balance", deltas)
    return fresh


_TX_TABLE: Table = LedgerTransaction.__table__  # type: ignore[assignment]
_POSTING_TABLE: Table = LedgerPosting.__table__  # type: ignore[assignment]
_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]
_TX_COLUMNS = ("key", "kind", "tenant_id", "job_id", "memo", "at")
_POSTING_COLUMNS = ("transaction_key", "account_id", "amount")


def balance(session: Session, account_id: str) -> int:
    value = session.scalar(select(LedgerAccount.balance).where(LedgerAccount.id == account_id))
    return int(value or 0)


def verify(session: Session) -> list[str]:
    """Every invariant of the ledger; one sentence per violation (empty: all good). The sums
    are computed by the database, so this scales with the ledger, not with Python memory."""
    unit = LedgerAccount.unit
    unbalanced = session.execute(
        select(LedgerPosting.transaction_key, unit, func.sum(LedgerPosting.amount))
        .join(LedgerAccount, LedgerAccount.id == LedgerPosting.account_id)
        .group_by(LedgerPosting.transaction_key, unit)
        .having(func.sum(LedgerPosting.amount) != 0)
    )
    problems = [
        f"transaction {key} does not sum to zero in {u}: off by {total}"
        for key, u, total in unbalanced
    ]
    empty = session.scalars(
        select(LedgerTransaction.key).where(
            ~LedgerTransaction.key.in_(select(LedgerPosting.transaction_key))
        )
    )
    problems += [f"transaction {key} has no postings" for key in empty]
    sums = dict(
        session.execute(
            select(LedgerPosting.account_id, func.sum(LedgerPosting.amount)).group_by(
                LedgerPosting.account_id
            )
        ).all()
    )
    for account_id, cached in session.execute(select(LedgerAccount.id, LedgerAccount.balance)):
        actual = int(sums.get(account_id) or 0)
        if cached != actual:
            problems.append(
                f"account {account_id}: cached balance {cached} != sum of its postings {actual}"
            )
    return problems


__all__ = ["balance", "ensure_accounts", "post", "verify"]
