"""The chaos test's billing finding, replayed deterministically (pass by pass, manual clock).

A run ends after the launcher asked the engine but before metering charges it: metering must
not charge past the run's real end, which the launcher records only at its next look. Metering
charges a running allocation up to when the launcher last saw it running
(controllers/run_watch.py). One replica, no kill needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select

from gpucloud.core.runs import RunStatus
from gpucloud.engines.base import EngineRef
from gpucloud.store.db import Database
from gpucloud.store.models import Allocation, AllocationMeter
from tests.billing_api import priced_api, run_for, submit, tenant
from tests.fakes import FakeEngine, gpu_node
from tests.harness import make_harness


class EndsAtEngine(FakeEngine):
    """The fake engine, but a run's end time is the engine's, as the local engine reports it."""

    def __init__(self) -> None:
        super().__init__([gpu_node()])
        self.finished: dict[str, datetime] = {}

    def status(self, refs: Sequence[EngineRef]) -> dict[EngineRef, RunStatus]:
        seen = super().status(refs)
        return {ref: RunStatus(s.phase, s.exit_code, s.message,
                               finished_at=self.finished.get(self.runs[ref].spec.job_id))
                if ref in self.runs else s for ref, s in seen.items()}


def test_a_run_that_ends_between_the_launchers_look_and_the_meter_is_charged_its_run(
        db: Database) -> None:
    engine = EndsAtEngine()
    h = make_harness(db, engine)
    api = priced_api(h)
    token = tenant(api, h, "acme", "100")
    job_id = submit(api, token)["id"]
    run_for(h, 3)
    controllers = {c.name: c for c in h.loop.controllers}
    h.clock.advance(1)
    controllers["launcher"].reconcile_once()  # still running when asked
    engine.exit(job_id, 0)  # ends right after, while the pass goes on
    engine.finished[job_id] = h.clock.now() + timedelta(seconds=0.2)
    h.clock.advance(1.5)  # a slow pass: metering runs later
    controllers["metering"].reconcile_once()
    h.settle(3)  # the end is recorded, the meter closes
    with db.read() as session:
        allocation = session.scalars(select(Allocation).where(Allocation.job_id == job_id)).one()
        meter = session.get_one(AllocationMeter, allocation.id)
        assert allocation.started_at is not None and allocation.released_at is not None
        ran = int((allocation.released_at - allocation.started_at).total_seconds())
        assert meter.metered_seconds == ran, f"charged {meter.metered_seconds} s, ran {ran} s"
