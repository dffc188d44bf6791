"""Double-entry rules: accounts, and transactions whose postings sum to zero in every unit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum


class AccountKind(StrEnum):
    WALLET = "wallet"  # a tenant's prepaid money
    PACKAGE = "package"  # a tenant's prepaid card-seconds of one model
    REVENUE = "revenue"  # what the operator earned
    FUNDING = "funding"  # money that came in from outside (top-ups): the wallets' counterpart
    PROMOTIONS = "promotions"  # credits and refunds given away
    PACKAGE_ISSUED = "package-issued"  # card-seconds sold, per model
    PACKAGE_USED = "package-used"  # card-seconds consumed, per model


class TxKind(StrEnum):
    TOPUP = "topup"
    CHARGE = "charge"
    CREDIT = "credit"
    PACKAGE_PURCHASE = "package-purchase"


@dataclass(frozen=True)
class Account:
    id: str
    kind: AccountKind
    unit: str  # a currency code, or card_unit(model)
    tenant_id: str | None = None


def card_unit(model: str) -> str:
    return f"card-s:{model}"


def wallet_account(tenant_id: str, currency: str) -> Account:
    return Account(f"wallet:{tenant_id}", AccountKind.WALLET, currency, tenant_id)


def package_account(tenant_id: str, model: str) -> Account:
    return Account(f"package:{tenant_id}:{model}", AccountKind.PACKAGE, card_unit(model), tenant_id)


def system_account(kind: AccountKind, unit: str) -> Account:
    return Account(f"{kind.value}:{unit}", kind, unit)


@dataclass(frozen=True)
class Posting:
    account: Account
    amount: int  # + raises the account's balance, - lowers it


@dataclass(frozen=True)
class LedgerTx:
    key: str  # idempotency key: a transaction with a key already written is not written again
    kind: TxKind
    postings: tuple[Posting, ...]
    tenant_id: str | None = None
    job_id: str | None = None
    memo: str = ""


class UnbalancedTransaction(ValueError):
    pass


def imbalance(postings: tuple[Posting, ...]) -> dict[str, int]:
    """Per unit, what the postings fail to cancel out (empty when balanced)."""
    sums: dict[str, int] = defaultdict(int)
    for posting in postings:
        sums[posting.account.unit] += posting.amount
    return {unit: total for unit, total in sums.items() if total != 0}


def check(tx: LedgerTx) -> None:
    if not tx.postings:
        raise UnbalancedTransaction(f"{tx.key}: a transaction needs postings")
    off = imbalance(tx.postings)
    if off:
        raise UnbalancedTransaction(f"{tx.key}: postings do not sum to zero: {off}")


def move(source: Account, target: Account, amount: int) -> tuple[Posting, Posting]:
    """The two legs that move ``amount`` from ``source`` to ``target``."""
    return Posting(source, -amount), Posting(target, amount)
