"""Runs the controllers in one background thread, one pass per tick or when woken."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from gpucloud.core.errors import EngineUnavailable
from gpucloud.store.db import DATABASE_UNAVAILABLE

log = logging.getLogger("gpucloud.controllers")
MAX_BACKOFF_S = 5.0


class Controller(Protocol):
    name: str

    def reconcile_once(self) -> None: ...


class ControlLoop:
    """A crash in one controller is logged and retried next tick; it never stops the others."""

    def __init__(
        self, controllers: Sequence[Controller], tick_s: float, coalesce_s: float = 0.05
    ) -> None:
        self.controllers = list(controllers)
        self.tick_s = tick_s
        # After a wake-up, wait this long so that a burst of API writes shares one pass.
        self.coalesce_s = coalesce_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        # Passes in a row that met an unavailable database: the wait grows while it lasts.
        self.failing_passes = 0

    def wake(self) -> None:
        """Called by the API after a write, so a new job is placed without waiting a tick."""
        self._wake.set()

    def run_pass(self) -> None:
        database_down = False
        for controller in self.controllers:
            try:
                controller.reconcile_once()
            except DATABASE_UNAVAILABLE as err:  # retry after a backoff: see next_wait_s
                database_down = True
                log.warning("%s: database unavailable, will retry: %s", controller.name,
                            str(err).strip().splitlines()[0] if str(err).strip() else err)
            except EngineUnavailable as err:  # the engine restarting: retry next tick
                log.warning("%s: engine unavailable, will retry: %s", controller.name, err)
            except Exception:
                log.exception("%s: reconcile failed, will retry", controller.name)
        self.passes += 1
        self.failing_passes = self.failing_passes + 1 if database_down else 0

    def next_wait_s(self) -> float:
        """The tick, doubled per failing pass in a row up to MAX_BACKOFF_S: a database that
        is restarting is not hammered by every replica's controllers."""
        if self.failing_passes == 0:
            return self.tick_s
        return min(max(self.tick_s, 0.1) * (1 << min(self.failing_passes, 8)), MAX_BACKOFF_S)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpucloud-controllers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_pass()
            if self.failing_passes:  # a wake-up cannot help while the database is away
                self._stop.wait(self.next_wait_s())
            elif self._wake.wait(self.tick_s) and not self._stop.is_set():
                self._stop.wait(self.coalesce_s)
            self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
