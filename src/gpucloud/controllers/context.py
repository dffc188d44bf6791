"""What every controller needs, injected: the database, the engine, the clock and ids."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpucloud.controllers.run_watch import SeenRunning
from gpucloud.core.clock import Clock
from gpucloud.core.ids import IdFactory
from gpucloud.engines.base import Engine
from gpucloud.store.db import Database
from gpucloud.store.sealed import Sealer


@dataclass(frozen=True)
class Tunables:
    stop_grace_s: float = 10.0  # SIGTERM, then SIGKILL after this long
    funds_stop_grace_s: float = 3.0  # the same when the wallet ran out (the tenant pays for it)
    inventory_interval_s: float = 2.0  # the heartbeat: how often the engine's nodes are read
    node_silence_s: float = 6.0  # a node not reported for this long is unhealthy
    tick_s: float = 0.5  # the loop's period when nothing wakes it earlier
    queue_window: int = 256  # queued jobs the scheduler looks at per pass, from the head
    launch_concurrency: int = 8  # engine launches in flight at once (each waits on the engine)


@dataclass(frozen=True)
class Context:
    db: Database
    engine: Engine
    clock: Clock
    ids: IdFactory
    tunables: Tunables = Tunables()
    # Opens secrets kept encrypted at rest (BMC logins); the server loads the real key.
    sealer: Sealer = field(default_factory=Sealer.ephemeral)
    # The launcher's latest sightings of running allocations; metering charges up to them.
    seen_running: SeenRunning = field(default_factory=SeenRunning)
