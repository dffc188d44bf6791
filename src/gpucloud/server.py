"""Assembles one control-plane process: database, engine, controllers and the API."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from gpucloud.api.deps import Platform
from gpucloud.api_workers import listening_socket, supervise
from gpucloud.controllers.admission import AdmissionController
from gpucloud.controllers.baremetal import BareMetalController
from gpucloud.controllers.context import Context, Tunables
from gpucloud.controllers.health import HealthController
from gpucloud.controllers.images import ImageController
from gpucloud.controllers.instances import InstanceController
from gpucloud.controllers.inventory import InventoryController
from gpucloud.controllers.launcher import LauncherController
from gpucloud.controllers.lease_metering import LeaseMeteringController
from gpucloud.controllers.metering import MeteringController
from gpucloud.controllers.progress import ProgressController
from gpucloud.controllers.runtime import Controller, ControlLoop
from gpucloud.controllers.scheduler import SchedulerController
from gpucloud.controllers.services import ServiceController
from gpucloud.controllers.volume_usage import VolumeUsageController
from gpucloud.core.clock import Clock, SystemClock
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.ids import IdFactory
from gpucloud.engines.base import Engine
from gpucloud.settings import Settings
from gpucloud.store import migrate
from gpucloud.store.accounts import bootstrap_operator
from gpucloud.store.db import Database, sqlite_url
from gpucloud.store.leader import FencedDatabase, LeaderElector, replica_id
from gpucloud.store.prices import bootstrap_prices
from gpucloud.store.sealed import load_sealer

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger("gpucloud")


@dataclass(frozen=True)
class BuiltEngine:
    engine: Engine
    note: str  # one line for the operator: what was discovered or simulated


def _local_engine(settings: Settings) -> BuiltEngine:
    from gpucloud.engines.discovery import local_nodes
    from gpucloud.engines.local import LocalEngine

    nodes, note = local_nodes(settings.simulate_gpus)
    engine = LocalEngine(settings.data_dir, nodes)
    if any(not d.simulated for n in nodes for d in n.devices):
        import pynvml

        engine.watch_nvml(pynvml)  # Xid events and error counters of the real GPUs
    return BuiltEngine(engine, note)


def _slurm_engine(settings: Settings) -> BuiltEngine:
    from gpucloud.engines.slurm.factory import build as build_slurm

    built = build_slurm(settings)
    return BuiltEngine(built.engine, built.note)


ENGINES: dict[str, Callable[[Settings], BuiltEngine]] = {
    "local": _local_engine,
    "slurm": _slurm_engine,
}


@dataclass
class ControlPlane:
    settings: Settings
    platform: Platform
    loop: ControlLoop
    engine_note: str
    new_admin_token: str | None  # set on the very first start only


def controllers_for(ctx: Context) -> list[Controller]:
    """Every reconcile loop, in the order one pass runs them."""
    return [
        InventoryController(ctx),
        HealthController(ctx),
        BareMetalController(ctx),  # Redfish steps of bare-metal leases (at most 1/s)
        InstanceController(ctx),  # before admission: a new run is admitted in the same pass
        ServiceController(ctx),  # before admission: new replicas are admitted in the same pass
        AdmissionController(ctx),
        SchedulerController(ctx),
        ImageController(ctx),  # before the launcher, which waits for jobs' images
        LauncherController(ctx),
        ProgressController(ctx),
        MeteringController(ctx),
        LeaseMeteringController(ctx),
        VolumeUsageController(ctx),
    ]


def build(settings: Settings, clock: Clock | None = None) -> ControlPlane:
    """Everything but the HTTP server; tests drive the result directly."""
    if settings.engine not in ENGINES:
        raise InvalidRequest(
            f"unknown engine {settings.engine!r}; available: " + ", ".join(sorted(ENGINES)),
            "engine",
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url or sqlite_url(settings.data_dir))
    migrate.upgrade(db)
    built = ENGINES[settings.engine](settings)
    ctx = Context(
        db=db,
        engine=built.engine,
        clock=clock or SystemClock(),
        ids=IdFactory(),
        tunables=Tunables(stop_grace_s=settings.stop_grace_s),
        sealer=load_sealer(settings.data_dir),
    )
    with db.write() as session:
        secret = bootstrap_operator(session, ctx.ids, ctx.clock.now())
        bootstrap_prices(session, ctx.clock.now(), effective_from=ctx.clock.now())
    if secret is not None:
        write_secret(settings.token_file, secret)
    # Controllers write through the fenced database and run only while this replica holds
    # the leader lease (docs/ha.md); the API keeps the plain one and serves on every replica.
    elector = LeaderElector(db, replica_id(settings.port))
    fenced = replace(ctx, db=FencedDatabase(db, elector))
    loop = ControlLoop(controllers_for(fenced), tick_s=ctx.tunables.tick_s, leadership=elector)
    # One pass before serving: the fleet is known before the first request can ask about it
    # (a follower's leader has done it).
    loop.keep_lease_once()
    loop.run_pass(loop.controllers[:1])
    platform = Platform(ctx, loop, auth_max_failures=settings.auth_max_failures,
                        auth_cache_s=settings.auth_cache_s)
    return ControlPlane(settings, platform, loop, built.note, secret)


def write_secret(path: Path, secret: str) -> None:
    """Create with mode 0600 from the start: the secret is never readable by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    path.chmod(0o600)


def serve(plane: ControlPlane, on_ready: Callable[[], None] | None = None) -> None:
    """Run the API and the controllers until interrupted: in this process, or with
    ``settings.workers`` > 1 the controllers here and the API in processes of its own."""
    if plane.settings.workers > 1:
        supervise(plane, on_ready)
    else:
        serve_api(plane, on_ready)


def serve_api(
    plane: ControlPlane,
    on_ready: Callable[[], None] | None = None,
    shared_port: bool = False,
    controllers: bool = True,
) -> None:
    """Serve the API until interrupted; ``controllers``: run the control loop here too.
    ``shared_port``: other processes listen on the port as well (api_workers.py)."""
    import uvicorn

    from gpucloud.api.app import create_app

    settings = plane.settings
    server = uvicorn.Server(
        uvicorn.Config(create_app(plane.platform), log_level="warning", access_log=False)
    )
    sock = listening_socket(settings.host, settings.port, shared_port)
    if controllers:
        plane.loop.start()
    if on_ready is not None:
        threading.Thread(target=_when_serving, args=(server, on_ready), daemon=True).start()
    try:
        server.run(sockets=[sock])
    finally:
        plane.loop.stop()
        plane.platform.ctx.db.dispose()
        sock.close()


def _when_serving(
    server: uvicorn.Server, on_ready: Callable[[], None], timeout_s: float = 60
) -> None:
    """Call ``on_ready`` once uvicorn listens and the app has started, so what we print is
    true when printed (a worker cannot ask its own URL: the kernel may answer from another)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not server.should_exit:
        if server.started:
            on_ready()
            return
        time.sleep(0.05)
