"""Keeps the nodes table in step with what the engine reports (the heartbeat), and the engine
in step with gpucloud's quarantine (drained while quarantined, resumed when returned)."""

from __future__ import annotations

import logging
from datetime import datetime

from gpucloud.controllers.context import Context
from gpucloud.core.errors import EngineError
from gpucloud.store.inventory import engine_node_changes, mark_silent_nodes, sync_nodes

log = logging.getLogger("gpucloud.inventory")


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
            mark_silent_nodes(
                session, {r.id for r in reports}, now, self.ctx.tunables.node_silence_s
            )
            changes = engine_node_changes(session, reports)
        # Level-triggered: a change that fails (or a crash before it) is found again next time.
        for change in changes:
            try:
                if change.drain:
                    self.ctx.engine.drain(change.node_id, change.reason)
                else:
                    self.ctx.engine.resume(change.node_id)
            except EngineError as err:
                log.warning("node %s: could not %s it in the engine: %s", change.node_id,
                            "drain" if change.drain else "resume", err)
        self._last = now
