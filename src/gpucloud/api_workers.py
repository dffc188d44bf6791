"""API processes of their own: ``gpucloud up --workers N``.

One Python process answers on one core at most (the GIL), and in a single process the
controllers take turns with the API threads, stretching each request and each write
transaction. With ``--workers N`` the process that ``gpucloud up`` starts runs the controllers
only (it holds the leader lease, taken at start) and supervises N API processes. Each API
process is a replica of the control plane (docs/ha.md) on the same database and data dir that
serves the API and runs no controllers; all listen on the same port (SO_REUSEPORT: the kernel
spreads new connections over them). A write in an API process wakes the controllers through a
shared event. A worker that dies is started again; a worker stops when the supervisor does,
even when the supervisor was killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import TYPE_CHECKING

from gpucloud.core.errors import GpucloudError
from gpucloud.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from gpucloud.server import ControlPlane

log = logging.getLogger("gpucloud.workers")
PARENT_POLL_S = 1.0
START_WAIT_S = 60.0
STOP_WAIT_S = 15.0
RESTART_AFTER_S = 5.0  # a worker that keeps dying is started at most this often


class WorkersFailed(GpucloudError):
    """Not one API process came up: there is nothing to serve with."""


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """The API's socket; ``shared``: other processes of this user may listen on it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """The controllers' process: starts, watches and stops the API processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")  # a fresh interpreter each
        self.wake_event = self._context.Event()  # set by any API process after a write
        self.workers: list[BaseProcess] = []
        # Kept while the worker lives: a collected Event unlinks its semaphore, and a child
        # that has not unpickled it yet would fail to start.
        self._serving: list[EventType] = []
        self._started_at: list[float] = []

    def start_all(self) -> int:
        """One API process per worker, returned once each serves (or has failed: logged);
        how many serve."""
        started = [self._spawn(number) for number in range(self.settings.workers)]
        self.workers = [process for process, _ in started]
        self._serving = [serving for _, serving in started]
        self._started_at = [time.monotonic()] * len(started)
        deadline = time.monotonic() + START_WAIT_S
        for process, serving in started:
            while not serving.wait(0.1):
                if not process.is_alive() or time.monotonic() > deadline:
                    log.error("API worker %s did not start (exit code %s)", process.pid,
                              process.exitcode)
                    break
        return sum(1 for _, serving in started if serving.is_set())

    def restart_dead(self) -> None:
        for number, process in enumerate(self.workers):
            recent = time.monotonic() - self._started_at[number] < RESTART_AFTER_S
            if process.is_alive() or recent:
                continue
            log.warning("API worker %s exited (code %s): starting another", process.pid,
                        process.exitcode)
            self.workers[number], self._serving[number] = self._spawn(number)
            self._started_at[number] = time.monotonic()

    def stop_all(self) -> None:
        for process in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for process in self.workers:
            process.join(max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                log.warning("API worker %s did not stop in %g s: killed", process.pid,
                            STOP_WAIT_S)
                process.kill()
                process.join(5)

    def _spawn(self, number: int) -> tuple[BaseProcess, EventType]:
        serving = self._context.Event()
        process = self._context.Process(
            target=_worker_main, name=f"gpucloud-api-{number}",
            args=(self.settings, os.getpid(), serving, self.wake_event),
        )
        process.start()
        return process, serving


def supervise(plane: ControlPlane, on_ready: Callable[[], None] | None) -> None:
    """Run the controllers here and the API in ``settings.workers`` processes, until
    interrupted (Ctrl-C or SIGTERM, raised in this, the main, thread)."""
    supervisor = Supervisor(plane.settings)
    stopping = threading.Event()
    plane.loop.lower_priority = True  # this process serves no request: see ControlLoop
    plane.loop.start()
    threading.Thread(target=_forward_wakes, args=(supervisor.wake_event, plane, stopping),
                     name="gpucloud-wakes", daemon=True).start()
    try:
        if supervisor.start_all() == 0:
            raise WorkersFailed(f"none of the {plane.settings.workers} API workers started; "
                                "their errors are above")
        if on_ready is not None:
            on_ready()
        while True:
            time.sleep(PARENT_POLL_S)
            supervisor.restart_dead()
    finally:
        stopping.set()
        supervisor.stop_all()
        plane.loop.stop()
        plane.platform.ctx.db.dispose()


def _forward_wakes(event: EventType, plane: ControlPlane, stopping: threading.Event) -> None:
    while not stopping.is_set():
        if event.wait(0.5):
            event.clear()
            plane.loop.wake()


def _worker_main(settings: Settings, parent_pid: int, serving: EventType,
                 wake: EventType) -> None:
    from gpucloud import server
    from gpucloud.cli.up import sigterm_stops

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    threading.Thread(target=_stop_with_parent, args=(parent_pid,), daemon=True).start()
    with sigterm_stops():
        plane = server.build(replace(settings, workers=1))
        plane.platform.wake_elsewhere = wake.set
        server.serve_api(plane, on_ready=serving.set, shared_port=True, controllers=False)


def _stop_with_parent(parent_pid: int) -> None:
    """A worker never outlives the supervisor (killed, it cannot stop us itself)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
