"""A control plane wired to a fake engine and a manual clock, driven pass by pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from gpucloud.api.app import create_app
from gpucloud.api.deps import Platform
from gpucloud.controllers.context import Context, Tunables
from gpucloud.controllers.runtime import ControlLoop
from gpucloud.core.clock import ManualClock
from gpucloud.core.ids import IdFactory
from gpucloud.engines.base import NodeReport
from gpucloud.engines.discovery import local_nodes
from gpucloud.engines.local import LocalEngine
from gpucloud.server import controllers_for
from gpucloud.store.accounts import bootstrap_operator
from gpucloud.store.db import Database
from gpucloud.store.prices import bootstrap_prices
from tests.fakes import FakeEngine, gpu_node


@dataclass
class Harness:
    ctx: Context
    engine: FakeEngine
    clock: ManualClock
    loop: ControlLoop
    admin_token: str

    def settle(self, passes: int = 3) -> None:
        for _ in range(passes):
            self.loop.run_pass()

    def restart(self) -> Harness:
        """A new set of controllers over the same database and engine: a control-plane restart."""
        return make_harness(self.ctx.db, self.engine, self.clock, self.admin_token)

    def api(self) -> TestClient:
        return TestClient(create_app(Platform(self.ctx, None)), raise_server_exceptions=False)


def make_harness(
    db: Database,
    engine: FakeEngine | None = None,
    clock: ManualClock | None = None,
    admin_token: str | None = None,
    nodes: Sequence[NodeReport] | None = None,
    tunables: Tunables | None = None,
) -> Harness:
    engine = engine or FakeEngine(nodes or [gpu_node()])
    clock = clock or ManualClock()
    ctx = Context(
        db=db,
        engine=engine,
        clock=clock,
        ids=IdFactory(),
        tunables=tunables or Tunables(stop_grace_s=10, inventory_interval_s=0, node_silence_s=0),
    )
    if admin_token is None:
        with db.write() as session:
            admin_token = bootstrap_operator(session, ctx.ids, clock.now())
            bootstrap_prices(session, clock.now(), effective_from=clock.now())
        assert admin_token is not None
    loop = ControlLoop(controllers_for(ctx), tick_s=0)
    loop.run_pass()
    return Harness(ctx, engine, clock, loop, admin_token)


def local_engine_harness(db: Database, data_dir: Path, gpus: str = "8xH100",
                         stop_grace_s: float = 2) -> Harness:
    """The real local engine (real processes in ``data_dir``) on simulated GPUs, with the
    inventory read every pass so that tests need not wait for its heartbeat."""
    engine = LocalEngine(data_dir, local_nodes(gpus)[0])
    return make_harness(db, engine, tunables=Tunables(  # type: ignore[arg-type]
        stop_grace_s=stop_grace_s, inventory_interval_s=0, node_silence_s=0))
