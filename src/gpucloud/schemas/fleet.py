"""Wire bodies of the asset register, the fleet report and bare metal."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from gpucloud.schemas import Wire


class AssetRecordIn(Wire):
    """One asset as an import file spells it (see docs/fleet.md), with the line it started on
    (0 when not from a file) so that problems name it."""

    model_config = ConfigDict(extra="forbid")
    line: int = 0
    kind: str
    values: dict[str, Any]


class AssetImportIn(Wire):
    model_config = ConfigDict(extra="forbid")
    assets: Annotated[list[AssetRecordIn], Field(max_length=20_000)]


class AssetImportOut(Wire):
    created: list[str]
    updated: list[str]
    unchanged: list[str]


class AssetPatchIn(Wire):
    """Fields to change, in the words of an import file (e.g. ``{"rack": "r2"}``)."""

    model_config = ConfigDict(extra="forbid")
    values: dict[str, Any]


class RetireIn(Wire):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class LinkOut(Wire):
    port: int
    peer: str


class AssetOut(Wire):
    id: str
    kind: str
    name: str
    role: str | None
    vendor: str
    model: str
    serial: str | None
    hostname: str | None
    rack: str
    position: int | None
    accelerators: str  # "8xH100", "" when none
    cpus: int
    memory_gib: int
    disks: list[str]
    bmc_address: str
    nvlink_island: str
    baremetal: bool
    fabric: str | None
    tier: str | None
    ports: int
    links: list[LinkOut]  # a switch's cables, by port
    capacity_gib: int
    protocol: str
    purchase_date: date | None
    purchase_cost: str  # exact decimal, in the register's currency
    currency: str
    depreciation_months: int
    power_watts: int
    opex_month: str
    node_id: str | None  # the engine node matched to this server
    topology: dict[str, str]  # its place in the fabric, as the scheduler sees it
    retired_at: datetime | None
    retire_reason: str
    updated_at: datetime


class FleetReportRow(Wire):
    asset: str
    node_id: str | None
    gpus: int
    accelerator: str
    cost_per_day: str  # depreciation + power + operating cost, exact decimal
    depreciation_per_day: str
    power_per_day: str
    opex_per_day: str
    revenue_per_day: str
    margin_per_day: str
    cost_per_gpu_hour: str | None  # None for servers without GPUs
    revenue_per_gpu_hour: str | None


class FleetReportOut(Wire):
    currency: str
    days: int
    since: datetime
    until: datetime
    power_price_kwh: str
    rows: list[FleetReportRow]
    total_cost_per_day: str
    total_revenue_per_day: str
