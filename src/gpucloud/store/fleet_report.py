"""The operator's fleet report: each asset's cost per day and per GPU-hour against the revenue
its node earned (``core.fleet_cost`` does the arithmetic).

Revenue is what the ledger charged for the allocations placed on the asset's node and for the
bare-metal leases of the server, counted for allocations and leases that started in the window
(their meters hold the exact amounts charged, so the report reads one row per allocation, not
every ledger posting), divided by the window's days.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.orm import Session

from gpucloud.billing.leases import LeaseKind
from gpucloud.billing.money import exponent
from gpucloud.core.fleet import AssetKind
from gpucloud.core.fleet_cost import CostInputs, DailyCost, daily_cost
from gpucloud.store.assets import currency, fleet_places
from gpucloud.store.models import Allocation, AllocationMeter, MeteredLease, Node
from gpucloud.store.models_fleet import Asset, BareMetalLease


@dataclass(frozen=True)
class ReportRow:
    asset: str  # the asset's name, or "(unregistered) NODE" for a node the register lacks
    node_id: str | None
    gpus: int
    accelerator: str
    cost: DailyCost
    revenue_per_day: Fraction


@dataclass(frozen=True)
class FleetReport:
    currency: str
    days: int
    since: datetime
    until: datetime
    kwh_price_minor: Fraction
    rows: list[ReportRow]


def fleet_report(session: Session, now: datetime, days: int, kwh_price: Fraction
                 ) -> FleetReport:
    """``kwh_price`` in the currency's major units (e.g. 0.15 a kWh)."""
    money = currency(session)
    since = now - timedelta(days=days)
    places = fleet_places(session)
    by_node: defaultdict[str, int] = defaultdict(int)
    for node_id, charged in session.execute(
        select(Allocation.node_id, AllocationMeter.charged_minor)
        .join(AllocationMeter, AllocationMeter.allocation_id == Allocation.id)
        .where(Allocation.created_at >= since)
    ):
        by_node[node_id] += int(charged)
    by_ref: defaultdict[str, int] = defaultdict(int)
    for asset_id, charged in session.execute(  # a server lease is charged to its lease's id
        select(BareMetalLease.asset_id, MeteredLease.charged_minor)
        .join(BareMetalLease, BareMetalLease.id == MeteredLease.ref_id)
        .where(MeteredLease.kind == LeaseKind.SERVER.value, MeteredLease.started_at >= since)
    ):
        by_ref[asset_id] += int(charged)
    kwh_minor = kwh_price * 10 ** exponent(money)
    rows = []
    seen_nodes = set()
    for asset in session.scalars(
        select(Asset).where(Asset.retired_at.is_(None)).order_by(Asset.kind, Asset.name)
    ):
        node = places.node_of(asset.name) if asset.kind is AssetKind.SERVER else None
        if node is not None:
            seen_nodes.add(node)
        earned = (by_node.get(node, 0) if node else 0) + by_ref.get(asset.id, 0)
        inputs = CostInputs(asset.purchase_cost_minor, asset.purchase_date,
                            asset.depreciation_months, asset.power_watts,
                            asset.opex_month_minor, asset.accelerator_count)
        rows.append(ReportRow(asset.name, node, asset.accelerator_count,
                              asset.accelerator_model or "",
                              daily_cost(inputs, now.date(), kwh_minor),
                              Fraction(earned, days)))
    for node_row in session.scalars(select(Node).order_by(Node.id)):
        if node_row.id in seen_nodes:
            continue
        zero = DailyCost(Fraction(0), Fraction(0), Fraction(0))
        model = node_row.devices[0].model if node_row.devices else ""
        rows.append(ReportRow(f"(unregistered) {node_row.id}", node_row.id,
                              len(node_row.devices), model, zero,
                              Fraction(by_node.get(node_row.id, 0), days)))
    return FleetReport(money, days, since, now, kwh_minor, rows)
