"""Tables of interactive GPU instances (issue 9)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.core.instances import Desired, IdleAction, InstanceState
from gpucloud.store.models import Base, str_enum


class Instance(Base):
    """An interactive GPU host. While it runs, ``current_job_id`` (a ``Workload.INSTANCE`` job
    owned by it) holds its GPUs; its disk (``disk_gib``) outlives every run."""

    __tablename__ = "instances"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    # The name while the instance exists, NULL once deleted: unique per tenant among the living
    # (NULLs never collide), so a name can be used again after a delete.
    live_name: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[InstanceState] = mapped_column(str_enum(InstanceState))
    desired: Mapped[Desired] = mapped_column(str_enum(Desired))
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]  # the validated InstanceSpec
    gpus: Mapped[int] = mapped_column(Integer)
    gpu_type: Mapped[str | None] = mapped_column(String(32))
    disk_gib: Mapped[int] = mapped_column(Integer)
    no_gpu: Mapped[bool] = mapped_column(Boolean, default=False)  # the current/next run's mode
    # Secret of the Jupyter server inside (the proxy sends it; users never need it).
    jupyter_token: Mapped[str | None] = mapped_column(String(64))
    current_job_id: Mapped[str | None] = mapped_column(String(32))
    runs: Mapped[int] = mapped_column(Integer, default=0)  # jobs started for it so far
    # Idle reclamation: the last reported GPU utilisation, since when it has been low, whether
    # the tenant was warned; an open saving window and the savings closed so far.
    utilization_pct: Mapped[int | None] = mapped_column(Integer)
    utilization_at: Mapped[datetime | None]
    low_since: Mapped[datetime | None]
    idle_warned_at: Mapped[datetime | None]
    reclaimed_at: Mapped[datetime | None]
    reclaim_rate_minor: Mapped[int] = mapped_column(BigInteger, default=0)  # saved per hour
    saved_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    saved_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]  # of the current run
    stopped_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    disk_freed_at: Mapped[datetime | None]  # the home directory was removed (after a delete)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_instances_tenant_id", "tenant_id", "id"),
        Index("ix_instances_live_name", "tenant_id", "live_name", unique=True),
        Index("ix_instances_state", "state"),
    )


class InstanceIdlePolicy(Base):
    """A tenant's idle reclamation rule (``core.instances.IdlePolicy``)."""

    __tablename__ = "instance_idle_policies"
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    below_pct: Mapped[int] = mapped_column(Integer)
    idle_s: Mapped[int] = mapped_column(Integer)
    grace_s: Mapped[int] = mapped_column(Integer)
    action: Mapped[IdleAction] = mapped_column(str_enum(IdleAction))
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
