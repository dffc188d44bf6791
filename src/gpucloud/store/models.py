"""Tables. The database is the source of truth; ``events`` is append-only."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from gpucloud.core.states import JobState, Workload


class UTCDateTime(TypeDecorator[datetime]):
    """Always timezone-aware UTC: SQLite would otherwise hand back naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use the injected clock (UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum: type[StrEnum], length: int = 16) -> Enum:
    """A column of enum values stored as their strings (VARCHAR plus a CHECK, on every database)."""
    return Enum(
        enum, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_operator: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    tenant: Mapped[Tenant] = relationship(lazy="joined")


class ApiToken(Base):
    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    # sha256 of the secret: tokens are 256-bit random, so a fast hash is safe and lookups are O(1)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(lazy="joined")


class Node(Base):
    __tablename__ = "nodes"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    engine: Mapped[str] = mapped_column(String(16))
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    healthy: Mapped[bool] = mapped_column(Boolean)
    health_message: Mapped[str] = mapped_column(Text, default="")
    # Where the node's workloads reach each other (rank 0's address is MASTER_ADDR).
    address: Mapped[str] = mapped_column(String(255), default="127.0.0.1")
    # Taken out of service by an operator (or, later, by the platform): nothing new is placed
    # on it, and the engine is told (Slurm drains it). Healthy and quarantined are separate:
    # the engine reports health, quarantine is gpucloud's decision.
    quarantined_at: Mapped[datetime | None]
    quarantine_reason: Mapped[str] = mapped_column(Text, default="")
    # "operator" (stays out until returned) or "platform" (a fault: back after a burn-in)
    quarantine_source: Mapped[str] = mapped_column(String(16), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_seen_at: Mapped[datetime]
    created_at: Mapped[datetime]
    devices: Mapped[list[Device]] = relationship(
        back_populates="node", order_by="Device.index", lazy="selectin"
    )


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # "<node>/gpu<index>"
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(32))
    memory_mib: Mapped[int] = mapped_column(Integer)
    uuid: Mapped[str] = mapped_column(String(64))
    pci_bus_id: Mapped[str] = mapped_column(String(32), default="")
    nvlink_peers: Mapped[list[Any]] = mapped_column(default=list)
    healthy: Mapped[bool] = mapped_column(Boolean, default=True)
    simulated: Mapped[bool] = mapped_column(Boolean, default=False)
    # Out of the pool after a fault until its burn-in passes; retired: out for good (repeated
    # faults), until an operator returns it.
    quarantined_at: Mapped[datetime | None]
    quarantine_reason: Mapped[str] = mapped_column(Text, default="")
    retired_at: Mapped[datetime | None]
    node: Mapped[Node] = relationship(back_populates="devices")

    @property
    def schedulable(self) -> bool:
        return self.healthy and self.quarantined_at is None and self.retired_at is None


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[JobState] = mapped_column(str_enum(JobState))
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]  # the validated JobSpec, as submitted
    workload: Mapped[Workload] = mapped_column(str_enum(Workload), default=Workload.JOB)
    # The instance or service this job runs for (None for a batch job).
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    nodes: Mapped[int] = mapped_column(Integer, default=1)  # replicas, one per node
    gpus: Mapped[int] = mapped_column(Integer)  # per node, as are cpu_milli and memory_mib
    gpu_type: Mapped[str | None] = mapped_column(String(32))
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    tier: Mapped[str] = mapped_column(String(16), default="on-demand")
    max_duration_s: Mapped[int | None] = mapped_column(Integer)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    restart_count: Mapped[int] = mapped_column(Integer, default=0)
    # Self-healing: restarts since the job last checkpointed (the restart budget), the last
    # checkpoint it reported, and the fault that requeued it (until its credit is posted).
    restarts_since_progress: Mapped[int] = mapped_column(Integer, default=0)
    last_checkpoint_step: Mapped[int | None] = mapped_column(BigInteger)
    last_checkpoint_at: Mapped[datetime | None]
    not_before: Mapped[datetime | None]  # requeued with a back-off: not placed before this
    fault_at: Mapped[datetime | None]
    fault_lost_s: Mapped[int] = mapped_column(Integer, default=0)
    # A stop asked for by a user or by the platform (e.g. billing); the launcher carries it out.
    stop_request: Mapped[str | None] = mapped_column(String(32))
    stop_requested_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # Optimistic concurrency: two writers of one job (API cancel, a controller) cannot both win.
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_jobs_tenant_created", "tenant_id", "id"),
        Index("ix_jobs_state", "state"),
    )


class Allocation(Base):
    """Resources held by one replica of a job on one node, from placement until release."""

    __tablename__ = "allocations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    replica: Mapped[int] = mapped_column(Integer, default=0)
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    device_ids: Mapped[list[Any]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    engine_ref: Mapped[str | None] = mapped_column(String(256))
    # Written before the engine is asked to launch: tells a restarted launcher it may have run.
    launch_attempted_at: Mapped[datetime | None]
    stop_requested_at: Mapped[datetime | None]
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    stop_forced: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_allocations_active", "active"),)


class DeviceClaim(Base):
    """One row per device held by an active allocation: the primary key forbids double booking."""

    __tablename__ = "device_claims"
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    allocation_id: Mapped[str] = mapped_column(ForeignKey("allocations.id"), index=True)


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime]
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    object_kind: Mapped[str] = mapped_column(String(16))
    object_id: Mapped[str] = mapped_column(String(160), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    before: Mapped[str | None] = mapped_column(String(32))
    after: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32), default="")
    message: Mapped[str] = mapped_column(Text, default="")


class IdempotencyRecord(Base):
    """The stored response of a create request, replayed when the same key comes again."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)  # the caller's tenant
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


# --- billing -----------------------------------------------------------------------------------

Money = BigInteger  # minor units (fen, cents): exact integers, never floats


class PriceVersionRow(Base):
    """One complete, immutable version of the price book."""

    __tablename__ = "price_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[datetime]
    currency: Mapped[str] = mapped_column(String(3))
    gpu_hour: Mapped[dict[str, Any]]  # model -> minor units per GPU-hour
    cpu_core_hour: Mapped[int] = mapped_column(Money)
    memory_gib_hour: Mapped[int] = mapped_column(Money)
    storage_gib_month: Mapped[int] = mapped_column(Money)
    spot_discount_pct: Mapped[int] = mapped_column(Integer)
    packages: Mapped[list[Any]]
    server_hour: Mapped[dict[str, Any]] = mapped_column(default=dict)  # server model -> per hour
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    id: Mapped[str] = mapped_column(String(96), primary_key=True)  # e.g. "wallet:tnt_..."
    kind: Mapped[str] = mapped_column(String(24))
    tenant_id: Mapped[str | None] = mapped_column(String(32), index=True)
    unit: Mapped[str] = mapped_column(String(40))  # a currency, or "card-s:H100"
    # Cached sum of the postings, updated by atomic increments; `ledger verify` recomputes it.
    balance: Mapped[int] = mapped_column(Money, default=0)
    low_balance_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class LedgerTransaction(Base):
    """Immutable. The unique key makes every write idempotent."""

    __tablename__ = "ledger_transactions"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    tenant_id: Mapped[str | None] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(String(32))
    memo: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    # One index for what is asked of this table (a tenant's transactions over a period); every
    # index more is paid on each of the tens of thousands of inserts a second metering makes.
    __table_args__ = (Index("ix_ledger_transactions_tenant_at", "tenant_id", "at"),)


class LedgerPosting(Base):
    __tablename__ = "ledger_postings"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    # By key, not id: batches insert without RETURNING (which SQLite cannot batch in order).
    transaction_key: Mapped[str] = mapped_column(ForeignKey("ledger_transactions.key"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)  # + raises the account's balance, - lowers it


class AllocationMeter(Base):
    """How far an allocation has been charged. Moves in the same transaction as its charge."""

    __tablename__ = "allocation_meters"
    allocation_id: Mapped[str] = mapped_column(ForeignKey("allocations.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), index=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    gpu_model: Mapped[str | None] = mapped_column(String(32))
    gpus: Mapped[int] = mapped_column(Integer)
    cpu_milli: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    metered_seconds: Mapped[int] = mapped_column(Integer, default=0)
    remainder: Mapped[int] = mapped_column(Money, default=0)  # below one minor unit, carried
    charged_minor: Mapped[int] = mapped_column(Money, default=0)
    card_seconds_from_packages: Mapped[int] = mapped_column(Money, default=0)
    final: Mapped[bool] = mapped_column(Boolean, default=False)


class MeteredLease(Base):
    """Something billed for as long as a tenant holds it, outside any allocation: a volume's
    GiB, a stopped instance's disk, a leased bare-metal server. ``billing.leases`` rates it and
    ``controllers.lease_metering`` charges it; ``charged_until`` and ``remainder`` move in the
    same transaction as the ledger transaction that charges up to them."""

    __tablename__ = "metered_leases"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # billing.leases.LeaseKind
    ref_id: Mapped[str] = mapped_column(String(64), index=True)  # the volume, instance, server
    item: Mapped[str] = mapped_column(String(64))  # the price book entry (a server model)
    quantity: Mapped[int] = mapped_column(Integer)  # GiB, or servers
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    charged_until: Mapped[datetime]
    remainder: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_minor: Mapped[int] = mapped_column(Money, default=0)
    # True once charged up to ended_at: the meter never reads it again.
    settled: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class PlatformSetting(Base):
    __tablename__ = "platform_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime]


class TenantLimit(Base):
    """A cap or budget of one tenant (see ``billing.limits``); its id is the limit's key."""

    __tablename__ = "tenant_limits"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(32))
    period: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The start of the budget period the tenant was last warned in: one warning per period.
    warned_period: Mapped[datetime | None]
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class Fault(Base):
    """Every health signal an engine reported, with what was decided. Append-only; its
    ``engine_seq`` is the cursor into the engine's signals (written with the actions taken)."""

    __tablename__ = "faults"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    engine: Mapped[str] = mapped_column(String(16))
    engine_seq: Mapped[int | None] = mapped_column(BigInteger)  # None: noticed by the platform
    at: Mapped[datetime]
    node_id: Mapped[str] = mapped_column(String(128), index=True)
    device_index: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    code: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(Text)
    alert: Mapped[bool] = mapped_column(Boolean, default=False)
    job_ids: Mapped[list[Any]] = mapped_column(default=list)
    __table_args__ = (Index("ix_faults_engine_seq", "engine", "engine_seq", unique=True),)


class ConsoleSession(Base):
    """A signed-in web console (``gpucloud.console``). The cookie holds a random secret and
    this row only its SHA-256, as for API tokens. A session lives while the token it was
    signed in with does, until sign-out, ``expires_at``, or idleness (``last_seen_at``)."""

    __tablename__ = "console_sessions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_id: Mapped[str] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    token: Mapped[ApiToken] = relationship(lazy="joined")


# The product areas keep their tables in modules of their own; importing them here puts those
# tables on ``Base.metadata`` for migrations, ``create_all`` and the migration test.
from gpucloud.store import (  # noqa: E402
    models_control,  # noqa: F401
    models_fleet,  # noqa: F401
    models_images,  # noqa: F401
    models_instances,  # noqa: F401
    models_services,  # noqa: F401
    models_workspaces,  # noqa: F401
)
