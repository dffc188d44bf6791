"""/v1/prices, /v1/wallet, /v1/usage, /v1/packages, /v1/estimates and the operator's
/v1/admin/{topups,credits,ledger,config}."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import Header, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gpucloud.api.deps import Platform, PlatformDep, PrincipalDep, visible_tenant
from gpucloud.api.routing import api_router
from gpucloud.billing.funds import burn_units_per_second, seconds_left
from gpucloud.billing.money import Money, parse_amount
from gpucloud.billing.pricing import (
    SCALE,
    Footprint,
    PriceVersion,
    price_per_hour_minor,
    units_per_second,
    version_at,
)
from gpucloud.core.catalog import resolve_model
from gpucloud.core.clock import as_utc
from gpucloud.core.config import SETTINGS, parse_setting
from gpucloud.core.errors import InsufficientFunds, InvalidRequest, NotFound
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.tenancy import Role
from gpucloud.schemas import (
    Amount,
    CreditIn,
    Estimate,
    LedgerReport,
    PackageOfferOut,
    PackagePurchase,
    PriceBookHistory,
    PriceBookOut,
    PriceChange,
    SettingIn,
    SettingOut,
    TopUp,
    UsageOut,
    WalletOut,
)
from gpucloud.store import billing as billing_store
from gpucloud.store import ledger
from gpucloud.store.limit_gate import LimitGate
from gpucloud.store.models import LedgerAccount, LedgerTransaction
from gpucloud.store.prices import add_version, latest_version_number, load_versions
from gpucloud.store.scheduling_input import fleet, never_fits_job
from gpucloud.store.settings import all_settings, set_setting

router = api_router(prefix="/v1", tags=["billing"])
IdempotencyKey = Annotated[str | None, Header()]


def amount(money: Money) -> Amount:
    return Amount(amount=f"{money.decimal}", minor=money.minor, currency=money.currency)


def price_book_out(v: PriceVersion) -> PriceBookOut:
    def m(minor: int) -> Amount:
        return amount(Money(minor, v.currency))

    return PriceBookOut(
        version=v.version,
        effective_from=v.effective_from,
        currency=v.currency,
        gpu_hour={model: m(p) for model, p in sorted(v.gpu_hour.items())},
        cpu_core_hour=m(v.cpu_core_hour),
        memory_gib_hour=m(v.memory_gib_hour),
        storage_gib_month=m(v.storage_gib_month),
        spot_discount_pct=v.spot_discount_pct,
        packages=[
            PackageOfferOut(
                name=p.name, model=p.model, gpu_hours=p.gpu_hours, price=m(p.price_minor)
            )
            for p in v.packages
        ],
        server_hour={model: m(p) for model, p in sorted(v.server_hour.items())},
    )


def _current(session: Session, platform: Platform) -> PriceVersion:
    versions = load_versions(session)
    if not versions:
        raise NotFound("price book", "current")
    return version_at(versions, platform.ctx.clock.now())


@router.get("/prices", response_model=PriceBookHistory)
def prices(platform: PlatformDep, who: PrincipalDep) -> PriceBookHistory:
    with platform.ctx.db.read() as session:
        versions = load_versions(session)
        current = _current(session, platform)
    return PriceBookHistory(
        current=price_book_out(current), versions=[price_book_out(v) for v in versions]
    )


@router.post("/prices", status_code=201, response_model=PriceBookOut)
def change_prices(body: PriceChange, platform: PlatformDep, who: PrincipalDep) -> PriceBookOut:
    """A new version of the price book, effective now; history is never rewritten."""
    who.require_operator("changing prices")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        base = _current(session, platform)
        cur = base.currency
        gpu = dict(base.gpu_hour)
        if (body.model is None) != (body.gpu_hour is None):
            raise InvalidRequest("give both model and gpu_hour to change a GPU price", "model")
        if body.model is not None and body.gpu_hour is not None:
            gpu[resolve_model(body.model).name] = _price(body.gpu_hour, cur, "gpu_hour")
        servers = dict(base.server_hour)
        if (body.server is None) != (body.server_hour is None):
            raise InvalidRequest("give both server and server_hour to price a server", "server")
        if body.server is not None and body.server_hour is not None:
            servers[body.server] = _price(body.server_hour, cur, "server_hour")
        version = PriceVersion(
            version=latest_version_number(session) + 1,
            effective_from=now,
            currency=cur,
            gpu_hour=gpu,
            cpu_core_hour=_price(body.cpu_core_hour, cur, "cpu_core_hour", base.cpu_core_hour),
            memory_gib_hour=_price(
                body.memory_gib_hour, cur, "memory_gib_hour", base.memory_gib_hour
            ),
            storage_gib_month=_price(
                body.storage_gib_month, cur, "storage_gib_month", base.storage_gib_month
            ),
            spot_discount_pct=(
                base.spot_discount_pct if body.spot_discount_pct is None else body.spot_discount_pct
            ),
            packages=base.packages,
            server_hour=servers,
        )
        add_version(session, version, who.user_name, now)
    return price_book_out(version)


def _price(text: str | None, currency: str, field: str, default: int = 0) -> int:
    if text is None:
        return default
    minor = parse_amount(text, currency, field).minor
    if minor < 0:
        raise InvalidRequest(f"{field}: a price cannot be negative", field)
    return minor


@router.get("/wallet", response_model=WalletOut)
def wallet(platform: PlatformDep, who: PrincipalDep, tenant: str | None = None) -> WalletOut:
    with platform.ctx.db.read() as session:
        tenant_id = visible_tenant(session, who, tenant)
        version = _current(session, platform)
        held = billing_store.holdings(session, tenant_id)
        running = billing_store.running_footprints(session, tenant_id)
    burn = burn_units_per_second(version, running)
    return WalletOut(
        tenant_id=tenant_id,
        currency=version.currency,
        balance=f"{Money(held.money_minor, version.currency).decimal}",
        balance_minor=held.money_minor,
        package_card_hours={m: f"{s / 3600:.4f}" for m, s in held.package_card_seconds.items()},
        burn_rate_per_hour=f"{Money(-(-burn * 3600 // SCALE), version.currency).decimal}",
        seconds_left=seconds_left(held, version, running),
        running_allocations=len(running),
    )


@router.post("/packages", status_code=201, response_model=WalletOut)
def buy_package(
    body: PackagePurchase,
    platform: PlatformDep,
    who: PrincipalDep,
    idempotency_key: IdempotencyKey = None,
) -> WalletOut:
    who.require(Role.MEMBER, "buying packages")
    key = idempotency_key or str(uuid.uuid4())
    with platform.ctx.db.write() as session:
        version = _current(session, platform)
        offer = next((p for p in version.packages if p.name == body.offer), None)
        if offer is None:
            known = ", ".join(p.name for p in version.packages) or "none"
            raise InvalidRequest(f"no package offer {body.offer!r}; offers: {known}", "offer")
        funds = billing_store.holdings(session, who.tenant_id).money_minor
        if funds < offer.price_minor:
            missing = Money(offer.price_minor - funds, version.currency)
            raise InsufficientFunds(
                f"package {offer.name} costs "
                f"{Money(offer.price_minor, version.currency)}; "
                f"top up at least {missing}"
            )
        billing_store.buy_package(
            session, who.tenant_id, offer, version.currency, key, platform.ctx.clock.now()
        )
    return wallet(platform, who)


@router.get("/usage", response_model=list[UsageOut])
def usage(
    platform: PlatformDep,
    who: PrincipalDep,
    tenant: str | None = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> list[UsageOut]:
    with platform.ctx.db.read() as session:
        tenant_id = visible_tenant(session, who, tenant)
        currency = _current(session, platform).currency
        rows = billing_store.usage(
            session, tenant_id, since and as_utc(since), until and as_utc(until), currency
        )
    return [
        UsageOut(
            job_id=r.job_id,
            job_name=r.job_name,
            allocation_id=r.allocation_id,
            gpu_model=r.gpu_model,
            gpus=r.gpus,
            seconds=r.seconds,
            gpu_seconds=r.gpu_seconds,
            card_seconds_from_packages=r.card_seconds_from_packages,
            cost=f"{r.cost.decimal}",
            cost_minor=r.cost.minor,
            currency=r.cost.currency,
            started_at=r.started_at,
            kind=r.kind,
            ref_id=r.ref_id,
            quantity=r.quantity,
        )
        for r in rows
    ]


@router.post("/estimates", response_model=Estimate)
def estimate(spec: JobSpec, platform: PlatformDep, who: PrincipalDep) -> Estimate:
    """Price and admission of a job, without submitting it (``gpucloud run --dry-run``)."""
    now = platform.ctx.clock.now()
    with platform.ctx.db.read() as session:
        version = _current(session, platform)
        asked = billing_store.footprint_of_spec(spec)
        fp = billing_store.priced_footprint(session, version, asked)
        funds = billing_store.affordability(session, who.tenant_id, fp, spec.max_duration_s, now)
        fits = never_fits_job(fleet(session), spec)
        quota = _quota_verdict(LimitGate(session, now), who.tenant_id, asked, spec.max_duration_s)
    per_hour = Money(price_per_hour_minor(version, fp), version.currency)
    total = None
    if spec.max_duration_s is not None:
        units = units_per_second(version, fp) * spec.max_duration_s
        total = amount(Money(-(-units // SCALE), version.currency))
    return Estimate(
        price_per_hour=amount(per_hour),
        max_duration_s=spec.max_duration_s,
        cost_for_max_duration=total,
        balance=amount(funds.balance) if funds else None,
        funds_ok=funds is None or funds.covered,
        funds_message=(
            "billing does not apply to the operator's tenant"
            if funds is None
            else "the wallet covers it"
            if funds.covered
            else funds.explain()
        ),
        fits_fleet=fits is None,
        fits_message=fits or "fits this fleet",
        quota_ok=quota is None,
        quota_message=quota or "within the tenant's quotas and budgets",
    )


def _quota_verdict(
    gate: LimitGate, tenant_id: str, fp: Footprint, max_duration_s: int | None
) -> str | None:
    never = gate.never(tenant_id, fp, max_duration_s)
    if never is not None:
        return f"never: {never}"
    blocked = gate.blocking(tenant_id, fp, max_duration_s)
    return None if blocked is None else f"would wait: {blocked.message}"


# --- operator --------------------------------------------------------------------------------


@router.post("/admin/topups", status_code=201, response_model=WalletOut)
def topup(
    body: TopUp, platform: PlatformDep, who: PrincipalDep, idempotency_key: IdempotencyKey = None
) -> WalletOut:
    who.require_operator("top-ups")
    ref = body.ref or idempotency_key or str(uuid.uuid4())
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, body.tenant)
        currency = _current(session, platform).currency
        billing_store.topup(
            session,
            tenant_id,
            parse_amount(body.amount, currency),
            ref,
            who.user_name,
            platform.ctx.clock.now(),
        )
    platform.wake()  # jobs waiting for funds may go now
    return wallet(platform, who, tenant_id)


@router.post("/admin/credits", status_code=201, response_model=WalletOut)
def credit(
    body: CreditIn, platform: PlatformDep, who: PrincipalDep, idempotency_key: IdempotencyKey = None
) -> WalletOut:
    who.require_operator("credits")
    ref = body.ref or idempotency_key or str(uuid.uuid4())
    with platform.ctx.db.write() as session:
        tenant_id = visible_tenant(session, who, body.tenant)
        currency = _current(session, platform).currency
        billing_store.credit(
            session,
            tenant_id,
            parse_amount(body.amount, currency),
            body.reason,
            ref,
            platform.ctx.clock.now(),
        )
    platform.wake()
    return wallet(platform, who, tenant_id)


@router.get("/admin/ledger/verify", response_model=LedgerReport)
def verify_ledger(platform: PlatformDep, who: PrincipalDep) -> LedgerReport:
    who.require_operator("verifying the ledger")
    with platform.ctx.db.read() as session:
        violations = ledger.verify(session)
        transactions = session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0
        accounts = session.scalar(select(func.count()).select_from(LedgerAccount)) or 0
    return LedgerReport(
        ok=not violations, violations=violations, transactions=transactions, accounts=accounts
    )


@router.get("/admin/config", response_model=list[SettingOut])
def list_config(platform: PlatformDep, who: PrincipalDep) -> list[SettingOut]:
    who.require_operator("reading settings")
    with platform.ctx.db.read() as session:
        values = all_settings(session)
    return [SettingOut(key=k, value=str(v), help=SETTINGS[k].help) for k, v in values.items()]


@router.get("/admin/config/{key}", response_model=SettingOut)
def get_config(key: str, platform: PlatformDep, who: PrincipalDep) -> SettingOut:
    settings = list_config(platform, who)  # operator check first
    if key not in SETTINGS:
        parse_setting(key, "")  # the same 'unknown setting; known: ...' error as a change
    return _one_setting(key, settings)


@router.put("/admin/config/{key}", response_model=SettingOut)
def set_config(key: str, body: SettingIn, platform: PlatformDep, who: PrincipalDep) -> SettingOut:
    who.require_operator("changing settings")
    now = platform.ctx.clock.now()
    with platform.ctx.db.write() as session:
        value = set_setting(session, key, body.value, now)
        if key == "billing.currency":
            billing_store.change_currency(session, str(value), who.user_name, now)
    return _one_setting(key, list_config(platform, who))


def _one_setting(key: str, settings: list[SettingOut]) -> SettingOut:
    for setting in settings:
        if setting.key == key:
            return setting
    raise NotFound("setting", key)
