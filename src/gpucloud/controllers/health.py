"""Faults in, actions out: reads the engine's health signals from its cursor, classifies each
with the operator's Xid policy, quarantines GPUs and nodes, stops the jobs they hit so that
they restart elsewhere (the launcher requeues them), notices nodes that went silent, and puts
hardware back once its burn-in passes.

Exactly once: a signal's fault row, its quarantine and its job stops commit together, and the
cursor is the highest signal recorded, so a crash at any line re-reads only what was not done.
"""

from __future__ import annotations

import logging

from gpucloud.controllers.context import Context
from gpucloud.core.faults import FaultAction, FaultDecision, FaultSignal, SignalKind, classify
from gpucloud.store.health import (
    burn_in_done,
    burn_ins_due,
    cursor,
    handle,
    unhealthy_in_service,
    xid_policy,
)
from gpucloud.store.settings import get_setting

log = logging.getLogger("gpucloud.health")


class HealthController:
    name = "health"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def reconcile_once(self) -> None:
        self._signals()
        self._silent_nodes()
        self._burn_ins()

    def _signals(self) -> None:
        engine = self.ctx.engine
        with self.ctx.db.read() as session:
            after = cursor(session, engine.name)
        signals = engine.faults(after)
        for signal in signals:
            now = self.ctx.clock.now()
            with self.ctx.db.write() as session:
                if cursor(session, engine.name) >= signal.seq:
                    continue  # another pass got it first
                decision = classify(signal, xid_policy(session))
                handled = handle(session, engine.name, signal, decision, now)
            log.info("%s on %s: %s; stopped %s", decision.description, signal.node_id,
                     decision.action.value, handled.stopped or "nothing")

    def _silent_nodes(self) -> None:
        """A node the engine stopped reporting (or reports down) is out until it reports again
        and passes its burn-in; its jobs restart elsewhere."""
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            silent = [(n.id, n.health_message) for n in unhealthy_in_service(session)]
        for node_id, message in silent:
            decision = FaultDecision(FaultAction.DRAIN_NODE, "node",
                                     f"node unhealthy: {message or 'no reason given'}",
                                     alert=False)
            noticed = FaultSignal(0, node_id, SignalKind.HEARTBEAT_LOSS, now, detail=message)
            with self.ctx.db.write() as session:
                still = {n.id for n in unhealthy_in_service(session)}
                if node_id in still:
                    handle(session, self.ctx.engine.name, noticed, decision, now)

    def _burn_ins(self) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.read() as session:
            due = burn_ins_due(session, now)
            simulated_pass = bool(get_setting(session, "health.simulated_burn_in_passes"))
        for item in due:
            if item.simulated:
                passed = simulated_pass
                detail = "simulated check " + ("passed" if passed else
                                               "set to fail (health.simulated_burn_in_passes)")
            else:
                result = self.ctx.engine.burn_in(item.node_id, item.device_index)
                passed, detail = result.passed, result.detail
            with self.ctx.db.write() as session:
                burn_in_done(session, item, passed, detail, self.ctx.clock.now())
