"""Many writers at once on one wallet: no lost update, on real SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError, OperationalError

from gpucloud.billing.ledger import (
    AccountKind,
    LedgerTx,
    TxKind,
    move,
    system_account,
    wallet_account,
)
from gpucloud.store import ledger
from gpucloud.store.db import Database

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WALLET = wallet_account("tnt_race", "CNY")
FUNDING = system_account(AccountKind.FUNDING, "CNY")
REVENUE = system_account(AccountKind.REVENUE, "CNY")


def write(db: Database, tx: LedgerTx) -> None:
    """What every caller of the ledger does: retry the transaction. A replay racing its original
    fails on the unique key (IntegrityError); on retry it sees the key and writes nothing."""
    for _ in range(20):
        try:
            with db.write() as session:
                ledger.post(session, [tx], NOW)
            return
        except (IntegrityError, OperationalError):
            continue
    raise AssertionError(f"could not write {tx.key}")


def test_parallel_topups_and_charges_lose_nothing(db: Database) -> None:
    with db.write() as session:  # accounts exist first, as they do once a tenant is funded
        ledger.ensure_accounts(session, [WALLET, FUNDING, REVENUE], NOW)
    topups = [LedgerTx(f"topup:{i}", TxKind.TOPUP, move(FUNDING, WALLET, 100))
              for i in range(150)]
    charges = [LedgerTx(f"charge:{i}", TxKind.CHARGE, move(WALLET, REVENUE, 30))
               for i in range(150)]
    replays = topups[:40]  # the same keys again: must change nothing
    work = [tx for pair in zip(topups, charges, strict=True) for tx in pair] + replays
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda tx: write(db, tx), work))
    with db.read() as session:
        assert ledger.balance(session, WALLET.id) == 150 * 100 - 150 * 30
        assert ledger.balance(session, REVENUE.id) == 150 * 30
        assert ledger.verify(session) == []
