"""Tables of the control plane's own coordination: leader leases (issue 12)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from gpucloud.store.models import Base


class LeaderLease(Base):
    """Who runs the controllers named ``name`` (core/leadership.py). ``token`` only grows: each
    acquisition takes the next one, and controller writes commit only under the current one."""

    __tablename__ = "leader_leases"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))  # a replica id, NULL once released
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime]
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
