"""Runs the controllers in one background thread, one pass per tick or when woken.

With a ``Leadership`` (several replicas on one database: docs/ha.md) a second thread keeps the
leader lease, and passes run only on the replica that holds it; the others serve the API only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from gpucloud.core.errors import EngineUnavailable
from gpucloud.core.leadership import LeadershipLost, Step
from gpucloud.store.db import DATABASE_UNAVAILABLE

log = logging.getLogger("gpucloud.controllers")
MAX_BACKOFF_S = 5.0


class Controller(Protocol):
    name: str

    def reconcile_once(self) -> None: ...


class Leadership(Protocol):
    """store/leader.py's LeaderElector, as the loop sees it."""

    me: str  # this replica's holder id
    renew_every_s: float

    def step(self) -> Step: ...

    def begin_pass(self) -> bool: ...

    def may_run(self) -> bool: ...

    def release(self) -> None: ...


CONTROLLER_NICE = 10


def _lower_this_threads_priority() -> None:
    """Linux keeps a nice value per thread: this lowers only the calling thread's."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CONTROLLER_NICE)
    except (AttributeError, OSError) as err:  # not Linux, or not permitted: no harm
        log.debug("could not lower the controllers' priority: %s", err)


class ControlLoop:
    """A crash in one controller is logged and retried next tick; it never stops the others."""

    def __init__(
        self,
        controllers: Sequence[Controller],
        tick_s: float,
        coalesce_s: float = 0.05,
        leadership: Leadership | None = None,
        idle_per_busy: float = 2.0,
    ) -> None:
        self.controllers = list(controllers)
        self.leadership = leadership  # None: a single replica that always runs the controllers
        self.tick_s = tick_s
        # After a wake-up, wait this long so that a burst of API writes shares one pass.
        self.coalesce_s = coalesce_s
        # Under a stream of writes, a woken loop rests this many times the CPU its last pass
        # used: each pass reads every kind of work, so back-to-back passes would take the CPU the
        # API needs (bench/load.py), while a small fleet's short passes still follow writes fast.
        self.idle_per_busy = idle_per_busy
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease_thread: threading.Thread | None = None
        self.passes = 0
        # Passes in a row that met an unavailable database: the wait grows while it lasts.
        self.failing_passes = 0
        # With the API in processes of their own (api_workers.py), the controllers' thread runs
        # at a lower priority: under CPU contention requests go first, as a pass can wait and a
        # user cannot (bench/load.py on PostgreSQL: single-object p99 28-33 ms -> 18-25 ms).
        # Never in a process that also serves the API: descheduled while holding the GIL, the
        # thread would hold up every request (p99 95 -> 139 ms).
        self.lower_priority = False

    def wake(self) -> None:
        """Called by the API after a write, so a new job is placed without waiting a tick."""
        self._wake.set()

    def run_pass(self, controllers: Sequence[Controller] | None = None) -> None:
        if self.leadership is not None and not self.leadership.begin_pass():
            return  # a follower: the leader's controllers do the work
        database_down = False
        for controller in self.controllers if controllers is None else controllers:
            if self.leadership is not None and not self.leadership.may_run():
                log.warning("leader lease not renewed in time: pass stopped before %s",
                            controller.name)
                break
            try:
                controller.reconcile_once()
            except LeadershipLost as err:  # fenced: another replica leads now
                log.warning("%s: %s", controller.name, err)
                break
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

    def rest_after_wake_s(self, last_pass_cpu_s: float) -> float:
        """How long a woken loop waits before its next pass: the coalescing window, or longer
        after a pass that used much CPU, so that the controllers take at most
        1/(1 + idle_per_busy) of a core under a stream of writes."""
        return max(self.coalesce_s, self.idle_per_busy * last_pass_cpu_s)

    def keep_lease_once(self) -> Step | None:
        """One acquire/renew/follow step; a follower that just became leader wakes the loop."""
        if self.leadership is None:
            return None
        try:
            step = self.leadership.step()
        except DATABASE_UNAVAILABLE as err:  # the lease lapses on its own if this lasts
            log.warning("leader lease: database unavailable, will retry: %s",
                        str(err).strip().splitlines()[0] if str(err).strip() else err)
            return None
        except Exception:
            log.exception("leader lease step failed, will retry")
            return None
        if step is Step.ACQUIRE:
            self.wake()
        return step

    def _keep_lease(self) -> None:
        assert self.leadership is not None
        while not self._stop.is_set():
            self.keep_lease_once()
            self._stop.wait(self.leadership.renew_every_s)

    def start(self) -> None:
        if self.leadership is not None:
            self._lease_thread = threading.Thread(
                target=self._keep_lease, name="gpucloud-leader-lease", daemon=True
            )
            self._lease_thread.start()
        self._thread = threading.Thread(target=self._run, name="gpucloud-controllers", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self.lower_priority:
            _lower_this_threads_priority()
        while not self._stop.is_set():
            # CPU, not wall time: a pass that waits on Slurm's commands or the database takes
            # nothing from the API while it waits.
            started = time.thread_time()
            self.run_pass()
            pass_cpu_s = time.thread_time() - started
            if self.failing_passes:  # a wake-up cannot help while the database is away
                self._stop.wait(self.next_wait_s())
            elif self._wake.wait(self.tick_s) and not self._stop.is_set():
                self._stop.wait(self.rest_after_wake_s(pass_cpu_s))
            self._wake.clear()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._lease_thread is not None:
            self._lease_thread.join(timeout)
        if self.leadership is not None:
            try:  # hand over at once instead of after the TTL
                self.leadership.release()
            except Exception as err:  # shutting down: the TTL covers it
                log.warning("could not release the leader lease: %s", err)
