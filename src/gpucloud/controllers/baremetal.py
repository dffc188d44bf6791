"""Carries bare-metal servers through their lifecycle over Redfish, level-triggered: each pass
reads what the BMC shows, asks ``core.baremetal.next_step`` what to do, does that one step and
writes down that it was done. A crash between the BMC call and the write repeats the step,
which is harmless (each is idempotent at the BMC: inserting the same image, powering on what
is on). Any failure sends the server to maintenance with the reason.

BMC calls are slow and may time out, so they run in the controller's own threads, outside any
database transaction, one at a time per server, up to ``CONCURRENCY`` servers at once, started
at most every ``INTERVAL_S`` (the loop ticks faster); a pass writes down the steps that have
finished since the last."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.orm import Session

from gpucloud.controllers.context import Context
from gpucloud.core.baremetal import (
    AFTER,
    WORKING,
    BareMetalState,
    Observed,
    PowerAction,
    Progress,
    Step,
    next_step,
    progressed,
    timed_out,
)
from gpucloud.engines.redfish import Bmc, BmcError
from gpucloud.store import baremetal as store
from gpucloud.store.models_fleet import Asset, BareMetalServer

log = logging.getLogger("gpucloud.controllers.baremetal")
INTERVAL_S = 1.0
CONCURRENCY = 8
_B = BareMetalState


class BareMetalController:
    name = "baremetal"

    def __init__(self, ctx: Context, interval_s: float = INTERVAL_S) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self._last: datetime | None = None
        # BMC steps run here, never in the control loop's thread: a BMC that hangs delays its
        # own server only. What is in flight is not state: a restart forgets it, and the next
        # pass derives the same step again from the BMC and the row.
        self._pool = ThreadPoolExecutor(CONCURRENCY, thread_name_prefix="bmc")
        self._running: dict[str, tuple[store.Work, Future[tuple[Step, str | None]]]] = {}

    def reconcile_once(self) -> None:
        for asset_id, (item, step) in list(self._running.items()):
            if step.done():
                del self._running[asset_id]
                self._write(item, *step.result())
        now = self.ctx.clock.now()
        if self._last is not None and (now - self._last).total_seconds() < self.interval_s:
            return
        self._last = now
        with self.ctx.db.read() as session:  # an idle pass only reads
            missing = bool(store.unsynced(session))
            todo = store.work(session, WORKING, self.ctx.sealer)
        if missing:
            with self.ctx.db.write() as session:
                store.sync_servers(session, now)
        for item in todo:
            if item.asset_id not in self._running:
                self._running[item.asset_id] = (item, self._pool.submit(self._step, item))

    def _step(self, item: store.Work) -> tuple[Step, str | None]:
        """One step at the BMC; returns it and, on failure, why (never raises)."""
        try:
            bmc = Bmc(item.access)
            seen = bmc.observe()
            step = next_step(item.state, seen, item.progress)
            _do(bmc, step, item, seen)
        except BmcError as err:
            return Step.WAIT, str(err)
        except Exception as err:  # a bug or an odd BMC: the server waits for a person
            log.exception("bare-metal step on %s failed", item.name)
            return Step.WAIT, f"{item.name}: unexpected {type(err).__name__}"
        return step, None

    def _write(self, item: store.Work, step: Step, failure: str | None) -> None:
        now = self.ctx.clock.now()
        with self.ctx.db.write() as session:
            asset = session.get_one(Asset, item.asset_id)
            server = session.get_one(BareMetalServer, item.asset_id)
            store.lock(session, server)
            if server.state is not item.state or server.state_since != item.state_since:
                return  # someone moved it meanwhile (a release, an operator): next pass
            if failure is not None:
                log.warning("bare-metal %s: %s step failed: %s", item.name, item.state.value,
                            failure)
                store.to_maintenance(session, asset, server,
                                     f"{item.state.value}: {failure}", now)
                return
            waited = (now - item.state_since).total_seconds()
            if step is Step.WAIT and timed_out(item.state, waited):
                store.to_maintenance(session, asset, server, f"{item.state.value}: nothing "
                                     f"changed at the BMC for {int(waited)}s", now)
                return
            if step is Step.DONE:
                self._done(session, asset, server, item, now)
                return
            if step is Step.BOOTED and item.state is _B.CLEANING:
                server.wipe_started_at = now
            done: Progress = progressed(item.progress, step)
            if done != item.progress:
                store.save_progress(server, done, now)

    def _done(self, session: Session, asset: Asset, server: BareMetalServer,
              item: store.Work, now: datetime) -> None:
        target = AFTER[item.state]
        if target is _B.LEASED:
            store.mark_leased(session, asset, server, now)
        elif target is _B.AVAILABLE:
            store.finish_cleaning(session, asset, server, item.image_name, now)
        else:
            store.set_state(session, asset, server, target, now, "STEP_DONE",
                            f"{item.state.value} done")


def _do(bmc: Bmc, step: Step, item: store.Work, seen: Observed) -> None:
    if step is Step.INSERT_MEDIA:
        if item.image_url is None:
            what = "wipe image" if item.state is _B.CLEANING else f"image {item.image_name!r}"
            raise BmcError(f"{item.name}: no {what} is registered; an operator adds one with "
                           "'gpucloud baremetal image add NAME URL"
                           + (" --wipe'" if item.state is _B.CLEANING else "'"))
        bmc.boot_from_media(item.image_url)
    elif step is Step.POWER_ON:
        # already on (a reimage, a server returned from maintenance): reset to boot the image
        bmc.power(PowerAction.RESET if seen.power_on else PowerAction.ON)
    elif step is Step.POWER_OFF:
        bmc.power(PowerAction.OFF)
    elif step is Step.EJECT_MEDIA:
        bmc.eject_media()
