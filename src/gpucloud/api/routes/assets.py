"""/v1/assets: the operator's asset register; /v1/fleet/report: cost against revenue.
Operators only: the register is the operator's business, not a tenant's."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Annotated

from fastapi import Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.api.deps import PlatformDep, PrincipalDep
from gpucloud.api.routing import api_router
from gpucloud.billing.money import Money
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.fleet import AssetKind, Record
from gpucloud.core.fleet_cost import per_gpu_hour, round_minor
from gpucloud.schemas import Page
from gpucloud.schemas.fleet import (
    AssetImportIn,
    AssetImportOut,
    AssetOut,
    AssetPatchIn,
    FleetReportOut,
    FleetReportRow,
    LinkOut,
    RetireIn,
)
from gpucloud.store.assets import (
    FleetPlaces,
    asset_names,
    currency,
    find_asset,
    fleet_places,
    import_assets,
    retire_asset,
    update_asset,
)
from gpucloud.store.fleet_report import fleet_report
from gpucloud.store.models_fleet import Asset, AssetLink
from gpucloud.store.paging import paginate

router = api_router(tags=["fleet"])


@router.post("/v1/assets/import", response_model=AssetImportOut)
def import_(body: AssetImportIn, platform: PlatformDep, who: PrincipalDep) -> AssetImportOut:
    """Create or update assets by name, all or nothing; the same file twice changes nothing."""
    who.require_operator("importing assets")
    records = [Record(a.line, a.kind, a.values) for a in body.assets]
    with platform.ctx.db.write() as session:
        result = import_assets(session, platform.ctx.ids, records, who.user_name,
                               platform.ctx.clock.now())
    platform.wake()
    return AssetImportOut(created=result.created, updated=result.updated,
                          unchanged=result.unchanged)


@router.get("/v1/assets", response_model=Page[AssetOut])
def list_assets(
    platform: PlatformDep,
    who: PrincipalDep,
    kind: AssetKind | None = None,
    retired: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 500,
    cursor: str | None = None,
) -> Page[AssetOut]:
    who.require_operator("reading the asset register")
    query = select(Asset)
    if kind is not None:
        query = query.where(Asset.kind == kind)
    if not retired:
        query = query.where(Asset.retired_at.is_(None))
    with platform.ctx.db.read() as session:
        page = paginate(session, query, Asset.name, limit, cursor, newest_first=False)
        places = fleet_places(session)
        return Page[AssetOut](items=[asset_out(session, a, places) for a in page.items],
                              next_cursor=page.next_cursor)


@router.get("/v1/assets/{name}", response_model=AssetOut)
def get_asset(name: str, platform: PlatformDep, who: PrincipalDep) -> AssetOut:
    who.require_operator("reading the asset register")
    with platform.ctx.db.read() as session:
        return asset_out(session, find_asset(session, name), fleet_places(session))


@router.patch("/v1/assets/{name}", response_model=AssetOut)
def patch_asset(name: str, body: AssetPatchIn, platform: PlatformDep,
                who: PrincipalDep) -> AssetOut:
    """Change fields of an asset, validated as in an import."""
    who.require_operator("updating assets")
    with platform.ctx.db.write() as session:
        update_asset(session, find_asset(session, name), body.values, who.user_name,
                     platform.ctx.clock.now())
    platform.wake()
    return get_asset(name, platform, who)


@router.post("/v1/assets/{name}/retire", response_model=AssetOut)
def retire(name: str, body: RetireIn, platform: PlatformDep, who: PrincipalDep) -> AssetOut:
    """Out of the fleet for good: kept for the record, no longer in topology or the report."""
    who.require_operator("retiring assets")
    with platform.ctx.db.write() as session:
        retire_asset(session, find_asset(session, name), body.reason, who.user_name,
                     platform.ctx.clock.now())
    platform.wake()
    return get_asset(name, platform, who)


@router.get("/v1/fleet/report", response_model=FleetReportOut)
def report(
    platform: PlatformDep,
    who: PrincipalDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    power_price: Annotated[str, Query(description="price of a kWh, e.g. 0.15")] = "0.15",
) -> FleetReportOut:
    """Per asset: cost per day (depreciation, power, operating cost) and per GPU-hour, against
    revenue per day over the last ``days``."""
    who.require_operator("reading the fleet report")
    try:
        kwh = Decimal(power_price)
    except InvalidOperation:
        kwh = Decimal(-1)
    if not kwh.is_finite() or kwh < 0:
        raise InvalidRequest(f"power_price: {power_price!r} is not a price; write e.g. 0.15",
                             "power_price")
    with platform.ctx.db.read() as session:
        found = fleet_report(session, platform.ctx.clock.now(), days, Fraction(kwh))
    money = found.currency

    def shown(value: Fraction | None) -> str | None:
        return None if value is None else str(Money(round_minor(value), money).decimal)

    rows = [
        FleetReportRow(
            asset=r.asset, node_id=r.node_id, gpus=r.gpus, accelerator=r.accelerator,
            cost_per_day=str(shown(r.cost.total)),
            depreciation_per_day=str(shown(r.cost.depreciation)),
            power_per_day=str(shown(r.cost.power)), opex_per_day=str(shown(r.cost.opex)),
            revenue_per_day=str(shown(r.revenue_per_day)),
            margin_per_day=str(shown(r.revenue_per_day - r.cost.total)),
            cost_per_gpu_hour=shown(per_gpu_hour(r.cost.total, r.gpus)),
            revenue_per_gpu_hour=shown(per_gpu_hour(r.revenue_per_day, r.gpus)),
        )
        for r in found.rows
    ]
    return FleetReportOut(
        currency=money, days=days, since=found.since, until=found.until,
        power_price_kwh=str(kwh), rows=rows,
        total_cost_per_day=str(shown(sum((r.cost.total for r in found.rows), Fraction(0)))),
        total_revenue_per_day=str(shown(sum((r.revenue_per_day for r in found.rows),
                                            Fraction(0)))),
    )


def asset_out(session: Session, a: Asset, places: FleetPlaces) -> AssetOut:
    money = currency(session)
    names = asset_names(session)
    links = [LinkOut(port=link.port, peer=names.get(link.peer_id, link.peer_id))
             for link in session.scalars(
                 select(AssetLink).where(AssetLink.switch_id == a.id).order_by(AssetLink.port))]
    node = places.node_of(a.name) if a.kind is AssetKind.SERVER else None
    return AssetOut(
        id=a.id, kind=a.kind.value, name=a.name, role=a.role.value if a.role else None,
        vendor=a.vendor, model=a.model, serial=a.serial, hostname=a.hostname, rack=a.rack,
        position=a.position,
        accelerators=f"{a.accelerator_count}x{a.accelerator_model}" if a.accelerator_count
        else "",
        cpus=a.cpus, memory_gib=a.memory_gib,
        disks=[f"{d['count']}x{d['size_gib']}G {d['type']}" for d in a.disks or []],
        bmc_address=a.bmc_address, nvlink_island=a.nvlink_island, baremetal=a.baremetal,
        fabric=a.fabric.value if a.fabric else None, tier=a.tier.value if a.tier else None,
        ports=a.ports, links=links, capacity_gib=a.capacity_gib, protocol=a.protocol,
        purchase_date=a.purchase_date,
        purchase_cost=str(Money(a.purchase_cost_minor, money).decimal), currency=money,
        depreciation_months=a.depreciation_months, power_watts=a.power_watts,
        opex_month=str(Money(a.opex_month_minor, money).decimal), node_id=node,
        topology=places.labels.get(node, {}) if node else {},
        retired_at=a.retired_at, retire_reason=a.retire_reason, updated_at=a.updated_at,
    )
