"""Keeps the nodes table in step with what the engine reports (the heartbeat)."""

from __future__ import annotations

from datetime import datetime

from gpucloud.controllers.context import Context
from gpucloud.store.inventory import mark_silent_nodes, sync_nodes


class InventoryController:
    name = "inventory"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last: datetime | None = None

    def reconcile_once(self) -> None:
        now = self.ctx.clock.now()
        # The interval only saves work; a restart simply syncs at once.
        interval = self.ctx.tunables.inventory_interval_s
        if self._last and (now - self._last).total_seconds() < interval:
            return
        reports = self.ctx.engine.nodes()
        with self.ctx.db.write() as session:
            sync_nodes(session, self.ctx.engine.name, reports, now)
            mark_silent_nodes(session, {r.id for r in reports}, now)
        self._last = now
