"""What crosses the wire: response and request bodies shared by the API and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gpucloud.billing.limits import LimitKind, Period
from gpucloud.core.jobspec import JobSpec
from gpucloud.core.states import JobState
from gpucloud.core.tenancy import Role

T = TypeVar("T")

__all__ = ["JobSpec"]


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Page(Wire, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class JobOut(Wire):
    id: str
    name: str | None
    tenant_id: str
    user_id: str
    state: JobState
    reason: str
    message: str
    command: list[str]
    env: dict[str, str]
    gpus: int
    gpu_type: str | None
    cpus: float
    memory_mib: int
    priority: int
    tier: str = "on-demand"
    max_duration_s: int | None
    exit_code: int | None
    restart_count: int
    cancel_requested: bool  # a stop was asked for (see stop_request for who and why)
    stop_request: str | None = None
    nodes: int = 1  # replicas, one per node; gpus, cpus and memory_mib are per node
    node_id: str | None = None  # rank 0's node while the job holds one
    node_ids: list[str] = Field(default_factory=list)  # every node it holds, in rank order
    devices: list[str] = Field(default_factory=list)  # device ids while the job holds them
    image: str | None = None  # the environment it runs in (docs/images.md)
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class DeviceAllocation(Wire):
    allocation_id: str | None  # hidden (None) when it belongs to another tenant
    job_id: str | None


class DeviceOut(Wire):
    id: str
    index: int
    model: str
    memory_mib: int
    uuid: str
    pci_bus_id: str
    nvlink_peers: list[int]
    health: str  # "healthy" | "unhealthy"
    simulated: bool
    allocation: DeviceAllocation | None
    quarantined: bool = False  # out of the pool after a fault, until its burn-in passes
    quarantine_reason: str = ""
    retired: bool = False  # repeated faults: out until an operator returns it


class FaultOut(Wire):
    id: int
    at: datetime
    node_id: str
    device_index: int | None
    kind: str  # xid, ecc, heartbeat-loss, ...
    code: int | None
    action: str  # application, reset-gpu, drain-node, observe
    description: str
    alert: bool
    job_ids: list[str]


class FaultInjection(Wire):
    model_config = ConfigDict(extra="forbid")
    node: str
    gpu: int | None = None
    kind: str  # xid | ecc | heartbeat-loss
    xid: int | None = None
    duration_s: Annotated[float, Field(gt=0, le=3600)] = 20.0  # heartbeat loss only


class XidPolicyOut(Wire):
    policy: dict[int, dict[str, str]]  # code -> {action, meaning}
    default: bool  # True while the operator has not changed it


class NodeOut(Wire):
    id: str
    engine: str
    health: str
    health_message: str
    simulated: bool
    cpus: float
    cpus_allocated: float
    memory_mib: int
    memory_mib_allocated: int
    labels: dict[str, str]
    last_seen_at: datetime
    address: str = "127.0.0.1"
    quarantined: bool = False  # out of service: nothing new is placed on it
    quarantine_reason: str = ""
    quarantined_at: datetime | None = None
    quarantined_by: str = ""  # "operator", or "platform" (a fault: back after a burn-in)
    devices: list[DeviceOut]
    faults: list[FaultOut] = Field(default_factory=list)  # the latest, newest first


class QuarantineIn(Wire):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class EventOut(Wire):
    id: int
    at: datetime
    object_kind: str
    object_id: str
    kind: str
    before: str | None
    after: str | None
    reason: str
    message: str


class TenantCreate(Wire):
    model_config = ConfigDict(extra="forbid")
    name: str


class TenantOut(Wire):
    id: str
    name: str
    is_operator: bool
    created_at: datetime


class UserCreate(Wire):
    model_config = ConfigDict(extra="forbid")
    name: str
    tenant: str | None = None  # name or id; default: the caller's tenant
    role: Role = Role.MEMBER


class UserOut(Wire):
    id: str
    name: str
    tenant_id: str
    tenant: str
    role: Role
    created_at: datetime


class UserCreated(UserOut):
    token: str  # shown once


class TokenCreate(Wire):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64)] = "cli"
    user: str | None = None  # name or id; default: the caller
    # At most a century: a longer one overflowed the expiry date (a 500: found by schemathesis).
    expires_in_s: Annotated[int | None, Field(gt=0, le=100 * 365 * 86400)] = None


class TokenOut(Wire):
    id: str
    name: str
    user_id: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str  # shown once


class WhoAmI(Wire):
    user_id: str
    user: str
    tenant_id: str
    tenant: str
    role: Role
    is_operator: bool


class Amount(Wire):
    """Exact money on the wire: a decimal string, its minor units, and the currency."""

    amount: str
    minor: int
    currency: str


class PackageOfferOut(Wire):
    name: str
    model: str
    gpu_hours: int
    price: Amount


class PriceBookOut(Wire):
    version: int
    effective_from: datetime
    currency: str
    gpu_hour: dict[str, Amount]
    cpu_core_hour: Amount
    memory_gib_hour: Amount
    storage_gib_month: Amount
    spot_discount_pct: int
    packages: list[PackageOfferOut]
    server_hour: dict[str, Amount] = Field(default_factory=dict)  # bare-metal model -> per hour


class PriceBookHistory(Wire):
    current: PriceBookOut
    versions: list[PriceBookOut]  # oldest first


class PriceChange(Wire):
    """A new version of the price book: the fields given change, the others carry over."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    gpu_hour: str | None = None  # per GPU-hour of ``model``, e.g. "3600.00"
    cpu_core_hour: str | None = None
    memory_gib_hour: str | None = None
    storage_gib_month: str | None = None
    spot_discount_pct: Annotated[int | None, Field(ge=0, le=100)] = None
    server: Annotated[str | None, Field(min_length=1, max_length=64)] = None  # bare-metal model
    server_hour: str | None = None  # per server-hour of ``server``


class WalletOut(Wire):
    tenant_id: str
    currency: str
    balance: str  # exact decimal, e.g. "14.00"
    balance_minor: int
    package_card_hours: dict[str, str]  # model -> hours left, exact to the second
    burn_rate_per_hour: str
    seconds_left: float | None  # at the current burn rate; None when nothing runs
    running_allocations: int


class TopUp(Wire):
    model_config = ConfigDict(extra="forbid")
    tenant: str
    amount: str
    ref: str | None = None  # the same ref twice is one top-up


class CreditIn(Wire):
    model_config = ConfigDict(extra="forbid")
    tenant: str
    amount: str
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    ref: str | None = None


class PackagePurchase(Wire):
    model_config = ConfigDict(extra="forbid")
    offer: str


class UsageOut(Wire):
    """One charged thing: a job's allocation (``kind`` job, instance or service-replica) or a
    metered lease (``kind`` storage or server, ``quantity`` GiB or servers)."""

    job_id: str | None
    job_name: str | None
    allocation_id: str | None
    gpu_model: str | None
    gpus: int
    seconds: int
    gpu_seconds: int
    card_seconds_from_packages: int
    cost: str
    cost_minor: int
    currency: str
    started_at: datetime
    kind: str = "job"
    ref_id: str = ""
    quantity: int = 0


class LedgerReport(Wire):
    ok: bool
    violations: list[str]
    transactions: int
    accounts: int


class SettingOut(Wire):
    key: str
    value: str
    help: str


class SettingIn(Wire):
    model_config = ConfigDict(extra="forbid")
    value: str


class Estimate(Wire):
    """What ``run --dry-run`` shows: the price and whether the job could start now."""

    price_per_hour: Amount
    max_duration_s: int | None
    cost_for_max_duration: Amount | None
    balance: Amount | None
    funds_ok: bool
    funds_message: str
    fits_fleet: bool
    fits_message: str
    quota_ok: bool = True
    quota_message: str = "no quota or budget stands in the way"


class LimitIn(Wire):
    """A cap or budget for a tenant; setting the same kind, model and period again replaces it."""

    model_config = ConfigDict(extra="forbid")
    tenant: str
    kind: LimitKind
    value: str  # '4' GPUs, '12.8' compute units, '100' card-hours, '5000.00' money
    model: str | None = None  # gpus and card-hours only; none means any model
    period: Period | None = None  # budgets (card-hours, spend) only


class LimitOut(Wire):
    tenant_id: str
    key: str
    kind: LimitKind
    model: str | None
    period: Period | None
    limit: str  # as a person reads it, e.g. '4 H100s at once'
    amount: int  # in the limit's unit: GPUs, milli compute units, card-seconds, minor units
    used: int  # the same unit: held now (caps) or used this period (budgets)
    used_text: str
    resets_at: datetime | None
