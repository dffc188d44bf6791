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


class BmcCredentialsIn(Wire):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1, max_length=256, repr=False)]


# -- bare metal ---------------------------------------------------------------------------------


class BareMetalServerOut(Wire):
    """A server leasable whole, as a tenant choosing one sees it (operators see the rest)."""

    name: str
    model: str  # the server model: what ``lease --model`` names and the price book prices
    vendor: str
    accelerators: str  # "8xH100", "" when none
    cpus: int
    memory_gib: int
    disks: list[str]
    rack: str
    state: str  # core.baremetal.BareMetalState
    price_per_hour: str | None  # exact decimal; None: not priced yet, so not leasable
    currency: str
    # operators only (None for tenants)
    reason: str | None = None  # why it is in maintenance, or the last step's failure
    tenant_id: str | None = None
    lease_id: str | None = None
    state_since: datetime | None = None
    wipe_started_at: datetime | None = None  # cleaning: the wipe image was seen running


class MaintenanceIn(Wire):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class BareMetalLeaseIn(Wire):
    """Lease one server: a named one, or any available one of a server model."""

    model_config = ConfigDict(extra="forbid")
    model: Annotated[str | None, Field(max_length=64)] = None
    server: Annotated[str | None, Field(max_length=64)] = None
    image: Annotated[str | None, Field(max_length=64)] = None


class BareMetalLeaseOut(Wire):
    id: str
    tenant_id: str
    server: str
    model: str
    accelerators: str
    image: str
    state: str  # provisioning, leased, releasing (the server's state while held), or ended
    reason: str  # why it ended, or what failed
    price_per_hour: str | None
    currency: str
    created_at: datetime
    leased_at: datetime | None
    ended_at: datetime | None
    charged: str  # what its server-hours cost so far, exact decimal
    power: str | None = None  # "on"/"off" as the BMC says now (a single lease's view only)


class PowerIn(Wire):
    model_config = ConfigDict(extra="forbid")
    action: str  # on, off, reset


class ReimageIn(Wire):
    model_config = ConfigDict(extra="forbid")
    image: Annotated[str | None, Field(max_length=64)] = None


class BootImageIn(Wire):
    model_config = ConfigDict(extra="forbid")
    url: Annotated[str, Field(min_length=1, max_length=1024)]
    purpose: str = "os"  # "os" (a tenant boots it) or "wipe" (erases disks between tenants)


class BootImageOut(Wire):
    name: str
    url: str
    purpose: str
    created_at: datetime
