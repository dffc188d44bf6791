"""Wire shapes of the control plane's coordination: who leads (docs/ha.md)."""

from __future__ import annotations

from datetime import datetime

from gpucloud.schemas import Wire


class LeaderOut(Wire):
    name: str  # the lease: "controllers"
    holder: str | None  # host:port:pid:nonce of the replica running the controllers
    token: int  # the fencing token: grows by one at every change of leader
    expires_at: datetime | None
    renewed_at: datetime | None
    acquired_at: datetime | None
    replica: str | None  # the replica that answered this request
    replica_leads: bool
