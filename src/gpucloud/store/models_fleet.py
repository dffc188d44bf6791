"""Tables of the operator's asset register and bare-metal leases (issue 11)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.core.baremetal import BareMetalState
from gpucloud.core.fleet import AssetKind, Fabric, ServerRole, SwitchTier
from gpucloud.store.models import Base, str_enum


class Asset(Base):
    """A server, switch or storage system the operator owns. Kind-specific columns are empty
    for the other kinds; ``name`` is the operator's, used everywhere (CLI, links, reports)."""

    __tablename__ = "assets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[AssetKind] = mapped_column(str_enum(AssetKind))
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[ServerRole | None] = mapped_column(str_enum(ServerRole))
    vendor: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(64), default="")
    serial: Mapped[str | None] = mapped_column(String(64), unique=True)
    hostname: Mapped[str | None] = mapped_column(String(128), index=True)
    rack: Mapped[str] = mapped_column(String(32), default="")
    position: Mapped[int | None] = mapped_column(Integer)  # rack unit
    accelerator_model: Mapped[str | None] = mapped_column(String(32))
    accelerator_count: Mapped[int] = mapped_column(Integer, default=0)
    cpus: Mapped[int] = mapped_column(Integer, default=0)  # cores
    memory_gib: Mapped[int] = mapped_column(Integer, default=0)
    disks: Mapped[list[Any]] = mapped_column(default=list)  # [{count, size_gib, type}]
    bmc_address: Mapped[str] = mapped_column(String(255), default="")  # Redfish URL
    nvlink_island: Mapped[str] = mapped_column(String(64), default="")
    baremetal: Mapped[bool] = mapped_column(Boolean, default=False)  # leasable whole
    fabric: Mapped[Fabric | None] = mapped_column(str_enum(Fabric))
    tier: Mapped[SwitchTier | None] = mapped_column(str_enum(SwitchTier))
    ports: Mapped[int] = mapped_column(Integer, default=0)
    capacity_gib: Mapped[int] = mapped_column(BigInteger, default=0)
    protocol: Mapped[str] = mapped_column(String(16), default="")
    purchase_date: Mapped[date | None] = mapped_column(Date)
    purchase_cost_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    depreciation_months: Mapped[int] = mapped_column(Integer, default=60)
    power_watts: Mapped[int] = mapped_column(Integer, default=0)
    opex_month_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    retired_at: Mapped[datetime | None]
    retire_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AssetLink(Base):
    """One cable: a port of a switch to a server, storage system or another switch."""

    __tablename__ = "asset_links"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    switch_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    port: Mapped[int] = mapped_column(Integer)
    peer_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    __table_args__ = (UniqueConstraint("switch_id", "port", name="uq_asset_links_port"),)


class BareMetalServer(Base):
    """A server leasable whole: its lifecycle state (``core.baremetal``) and who holds it."""

    __tablename__ = "baremetal_servers"
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    state: Mapped[BareMetalState] = mapped_column(str_enum(BareMetalState))
    reason: Mapped[str] = mapped_column(Text, default="")
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    image: Mapped[str] = mapped_column(String(64), default="")
    lease_id: Mapped[str | None] = mapped_column(String(32))  # the tenant's lease holding it
    wipe_started_at: Mapped[datetime | None]  # cleaning: when the wipe image was seen booted
    # core.baremetal.Progress of the current state, and when the state began (for timeouts)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state_since: Mapped[datetime]
    updated_at: Mapped[datetime]


class BootImage(Base):
    """An OS image a bare-metal lease may boot (and the wipe image), by name."""

    __tablename__ = "boot_images"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024))
    purpose: Mapped[str] = mapped_column(String(8), default="os")  # "os" or "wipe"
    created_at: Mapped[datetime]


class WipeAttestation(Base):
    """How, when and with what outcome a server's disks were wiped between tenants."""

    __tablename__ = "wipe_attestations"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    tenant_id: Mapped[str | None] = mapped_column(String(32))  # whose data was wiped
    method: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # "erased" or "failed"
    detail: Mapped[str] = mapped_column(Text, default="")


class BmcCredential(Base):
    """The login of a server's BMC (Redfish basic auth). Kept apart from ``assets`` so that no
    listing, report or event of the register can carry it; never logged or answered."""

    __tablename__ = "bmc_credentials"
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), primary_key=True)
    username: Mapped[str] = mapped_column(String(128))
    password: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime]


class BareMetalLease(Base):
    """A tenant's lease of one whole server, from the request to its release. Billed by a
    metered lease (``billing.leases.LeaseKind.SERVER``, ref_id = this id) while ``leased_at``
    .. ``ended_at``."""

    __tablename__ = "baremetal_leases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    asset_id: Mapped[str] = mapped_column(ForeignKey("assets.id"), index=True)
    image: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]
    leased_at: Mapped[datetime | None]  # provisioned: billing starts
    ended_at: Mapped[datetime | None]  # released, or failed: billing stops
    reason: Mapped[str] = mapped_column(Text, default="")  # how it ended
