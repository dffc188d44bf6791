"""Billing reads and writes on behalf of tenants: wallets, top-ups, credits, packages, usage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.billing.funds import Holdings, admission_shortfall_minor
from gpucloud.billing.leases import LeaseKind
from gpucloud.billing.ledger import (
    AccountKind,
    LedgerTx,
    TxKind,
    card_unit,
    move,
    package_account,
    system_account,
    wallet_account,
)
from gpucloud.billing.money import Money
from gpucloud.billing.pricing import (
    Footprint,
    PackageOffer,
    PriceVersion,
    Tier,
    price_per_hour_minor,
    version_at,
)
from gpucloud.core.errors import Conflict, InvalidRequest
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import Workload
from gpucloud.store import ledger
from gpucloud.store.inventory import allocation_gpu_model, fleet_models
from gpucloud.store.models import (
    Allocation,
    AllocationMeter,
    Job,
    LedgerAccount,
    LedgerTransaction,
    MeteredLease,
    Tenant,
)
from gpucloud.store.prices import add_version, latest_version_number, load_versions
from gpucloud.store.settings import get_setting


def holdings(session: Session, tenant_id: str) -> Holdings:
    money = 0
    packages: dict[str, int] = {}
    for account in session.scalars(
        select(LedgerAccount).where(LedgerAccount.tenant_id == tenant_id)
    ):
        if account.kind == AccountKind.WALLET:
            money = account.balance
        elif account.kind == AccountKind.PACKAGE:
            packages[account.unit.removeprefix("card-s:")] = account.balance
    return Holdings(money, packages)


def footprint_of(job: Job) -> Footprint:
    """The whole job: what each of its nodes holds, times its nodes."""
    n = job.nodes
    return Footprint(
        job.gpus * n, job.gpu_type, job.cpu_milli * n, job.memory_mib * n, Tier(job.tier), n
    )


def footprint_of_spec(spec: JobSpec) -> Footprint:
    n = spec.nodes
    return Footprint(
        spec.gpus * n, spec.gpu_type, spec.cpu_milli * n, spec.memory_mib * n, spec.tier, n
    )


def running_footprints(session: Session, tenant_id: str) -> list[Footprint]:
    """What the tenant is paying for right now: allocations that have started and not ended."""
    rows = session.execute(
        select(Allocation, Job.tier)
        .join(Job, Job.id == Allocation.job_id)
        .where(Job.tenant_id == tenant_id, Allocation.active, Allocation.started_at.is_not(None))
    )
    return [
        Footprint(
            len(a.device_ids),
            allocation_gpu_model(session, a),
            a.cpu_milli,
            a.memory_mib,
            Tier(tier),
        )
        for a, tier in rows
    ]


def priced_footprint(session: Session, version: PriceVersion, fp: Footprint) -> Footprint:
    """A request for 'any GPU' is quoted at the dearest model it could land on: the quote and
    the admission check must never be lower than what metering will charge."""
    if not fp.gpus or fp.gpu_model is not None:
        return fp
    models = fleet_models(session, fp.gpus_per_node)
    if not models:
        return fp
    dearest = max(sorted(models), key=lambda m: version.gpu_hour.get(m, 0))
    return replace(fp, gpu_model=dearest)


def topup(
    session: Session, tenant_id: str, amount: Money, ref: str, who: str, now: datetime
) -> bool:
    """Add money to a wallet. The same ``ref`` twice is one top-up: returns False on a replay."""
    if amount.minor <= 0:
        raise InvalidRequest("a top-up must be a positive amount", "amount")
    wallet = wallet_account(tenant_id, amount.currency)
    funding = system_account(AccountKind.FUNDING, amount.currency)
    tx = LedgerTx(
        f"topup:{tenant_id}:{ref}",
        TxKind.TOPUP,
        move(funding, wallet, amount.minor),
        tenant_id=tenant_id,
        memo=f"top-up by {who} (ref {ref})",
    )
    return bool(ledger.post(session, [tx], now))


def credit(
    session: Session,
    tenant_id: str,
    amount: Money,
    reason: str,
    key: str,
    now: datetime,
    job_id: str | None = None,
) -> bool:
    """A credit or refund: given by the operator (promotions), always with a reason."""
    if amount.minor <= 0:
        raise InvalidRequest("a credit must be a positive amount", "amount")
    if not reason.strip():
        raise InvalidRequest("a credit needs a reason", "reason")
    tx = LedgerTx(
        f"credit:{tenant_id}:{key}",
        TxKind.CREDIT,
        move(
            system_account(AccountKind.PROMOTIONS, amount.currency),
            wallet_account(tenant_id, amount.currency),
            amount.minor,
        ),
        tenant_id=tenant_id,
        job_id=job_id,
        memo=reason,
    )
    return bool(ledger.post(session, [tx], now))


def buy_package(
    session: Session, tenant_id: str, offer: PackageOffer, currency: str, key: str, now: datetime
) -> bool:
    """Money from the wallet to revenue, and the offer's card-seconds into the tenant's package
    (issued from the model's package pool: both units balance on their own)."""
    money = move(
        wallet_account(tenant_id, currency),
        system_account(AccountKind.REVENUE, currency),
        offer.price_minor,
    )
    seconds = offer.gpu_hours * 3600
    cards = move(
        system_account(AccountKind.PACKAGE_ISSUED, card_unit(offer.model)),
        package_account(tenant_id, offer.model),
        seconds,
    )
    tx = LedgerTx(
        f"package:{tenant_id}:{key}",
        TxKind.PACKAGE_PURCHASE,
        (*money, *cards),
        tenant_id=tenant_id,
        memo=f"package {offer.name}",
    )
    return bool(ledger.post(session, [tx], now))


@dataclass(frozen=True)
class UsageRow:
    """One charged thing: an allocation of a job (or of an instance's or service's job), or a
    metered lease (storage, a server). ``kind`` says which; ``ref_id`` is the product object."""

    job_id: str | None
    job_name: str | None
    allocation_id: str | None
    gpu_model: str | None
    gpus: int
    seconds: int
    gpu_seconds: int
    card_seconds_from_packages: int
    cost: Money
    started_at: datetime
    kind: str = Workload.JOB.value
    ref_id: str = ""
    quantity: int = 0  # GiB or servers, for leases


def usage(
    session: Session,
    tenant_id: str | None,
    since: datetime | None,
    until: datetime | None,
    currency: str,
) -> list[UsageRow]:
    query = (
        select(AllocationMeter, Job.name, Job.workload, Job.owner_id)
        .join(Job, Job.id == AllocationMeter.job_id)
        .order_by(AllocationMeter.started_at)
    )
    if tenant_id is not None:
        query = query.where(AllocationMeter.tenant_id == tenant_id)
    if since is not None:
        query = query.where(AllocationMeter.started_at >= since)
    if until is not None:
        query = query.where(AllocationMeter.started_at < until)
    rows = [
        UsageRow(
            job_id=m.job_id,
            job_name=name,
            allocation_id=m.allocation_id,
            gpu_model=m.gpu_model,
            gpus=m.gpus,
            seconds=m.metered_seconds,
            gpu_seconds=m.gpus * m.metered_seconds,
            card_seconds_from_packages=m.card_seconds_from_packages,
            cost=Money(m.charged_minor, currency),
            started_at=m.started_at,
            kind=workload.value,
            ref_id=owner or m.job_id,
        )
        for m, name, workload, owner in session.execute(query)
    ]
    rows += _lease_usage(session, tenant_id, since, until, currency)
    return sorted(rows, key=lambda row: row.started_at)


def _lease_usage(
    session: Session,
    tenant_id: str | None,
    since: datetime | None,
    until: datetime | None,
    currency: str,
) -> list[UsageRow]:
    query = select(MeteredLease).order_by(MeteredLease.started_at)
    if tenant_id is not None:
        query = query.where(MeteredLease.tenant_id == tenant_id)
    if since is not None:
        query = query.where(MeteredLease.started_at >= since)
    if until is not None:
        query = query.where(MeteredLease.started_at < until)
    return [
        UsageRow(
            job_id=None,
            job_name=None,
            allocation_id=None,
            gpu_model=lease.item if lease.kind == LeaseKind.SERVER else None,
            gpus=0,
            seconds=int((lease.charged_until - lease.started_at).total_seconds()),
            gpu_seconds=0,
            card_seconds_from_packages=0,
            cost=Money(lease.charged_minor, currency),
            started_at=lease.started_at,
            kind=lease.kind,
            ref_id=lease.ref_id,
            quantity=lease.quantity,
        )
        for lease in session.scalars(query)
    ]


def tenants_with_running_work(
    session: Session, tenant_ids: Sequence[str] | None = None
) -> set[str]:
    query = (
        select(Job.tenant_id)
        .join(Allocation, Allocation.job_id == Job.id)
        .where(Allocation.active, Allocation.started_at.is_not(None))
    )
    if tenant_ids is not None:
        query = query.where(Job.tenant_id.in_(tenant_ids))
    return set(session.scalars(query))


@dataclass(frozen=True)
class Affordability:
    price_per_hour: Money
    runway_s: int  # how long the wallet must cover the job for it to be admitted
    balance: Money
    shortfall: Money  # zero when the job can be admitted

    @property
    def covered(self) -> bool:
        return self.shortfall.minor == 0

    def explain(self) -> str:
        return (
            f"this job costs {self.price_per_hour} per hour and needs {self.runway_s}s "
            f"covered to start; the wallet has {self.balance}: top up at least "
            f"{self.shortfall}"
        )


def affordability(
    session: Session,
    tenant_id: str,
    fp: Footprint,
    max_duration_s: int | None,
    now: datetime,
    priced: tuple[PriceVersion | None, int] | None = None,
    held: Holdings | None = None,
) -> Affordability | None:
    """Whether the tenant can start ``fp`` now; None when billing does not apply (the operator's
    own tenant, or no price book yet). ``priced`` is the (version in force, runway seconds) and
    ``held`` the tenant's holdings that a caller checking many jobs at once has loaded."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or tenant.is_operator:
        return None
    if priced is None:
        versions = load_versions(session)
        priced = (
            version_at(versions, now) if versions else None,
            int(get_setting(session, "billing.admission_runway_seconds")),
        )
    version, runway = priced
    if version is None:
        return None
    fp = priced_footprint(session, version, fp)
    held = held if held is not None else holdings(session, tenant_id)
    missing = admission_shortfall_minor(held, version, fp, runway, max_duration_s)
    seconds = runway if max_duration_s is None else min(runway, max_duration_s)
    return Affordability(
        Money(price_per_hour_minor(version, fp), version.currency),
        seconds,
        Money(held.money_minor, version.currency),
        Money(missing, version.currency),
    )


def change_currency(session: Session, currency: str, who: str, now: datetime) -> None:
    """Allowed only before any money moved: amounts in the ledger keep their currency."""
    if session.scalar(select(func.count()).select_from(LedgerTransaction)):
        raise Conflict("the currency can only change before the first ledger transaction")
    current = version_at(load_versions(session), now)
    if current.currency == currency:
        return
    add_version(
        session,
        replace(
            current,
            version=latest_version_number(session) + 1,
            effective_from=now,
            currency=currency,
        ),
        who,
        now,
    )
