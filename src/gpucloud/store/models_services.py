"""Tables of inference services and their replicas (issue 10)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.core.services import ReplicaState, ServiceState
from gpucloud.store.models import Base, str_enum


class Service(Base):
    """An inference endpoint: ``desired_replicas`` replicas of spec ``generation`` behind
    ``/s/<tenant>/<name>/``. The autoscaler writes ``desired_replicas``; an update bumps
    ``generation`` and the controller rolls the replicas over to it."""

    __tablename__ = "services"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(64))
    # The name while the service exists, NULL once deleted (unique per tenant among the living).
    live_name: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[ServiceState] = mapped_column(str_enum(ServiceState))
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)  # the user deleted it
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    spec: Mapped[dict[str, Any]]  # the validated ServiceSpec of ``generation``
    generation: Mapped[int] = mapped_column(Integer, default=1)
    desired_replicas: Mapped[int] = mapped_column(Integer, default=0)
    # Public: callers without a gpucloud account reach it with its own key (only its hash).
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    key_hash: Mapped[str | None] = mapped_column(String(64))
    replicas_started: Mapped[int] = mapped_column(Integer, default=0)  # the next ordinal
    last_request_at: Mapped[datetime | None]  # as the controller last saw it from the router
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_services_tenant_id", "tenant_id", "id"),
        Index("ix_services_live_name", "tenant_id", "live_name", unique=True),
        Index("ix_services_state", "state"),
    )


class ServiceReplica(Base):
    """One replica: a job serving HTTP on ``host:port`` (the job's node and its ``PORT``)."""

    __tablename__ = "service_replicas"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    ordinal: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per service (``--replica i``)
    generation: Mapped[int] = mapped_column(Integer)
    state: Mapped[ReplicaState] = mapped_column(str_enum(ReplicaState))
    message: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[str] = mapped_column(String(32))
    port: Mapped[int] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(255))  # known once the job is placed
    created_at: Mapped[datetime]
    ready_at: Mapped[datetime | None]
    draining_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        Index("ix_service_replicas_service", "service_id", "ordinal", unique=True),
        Index("ix_service_replicas_state", "state"),
    )
