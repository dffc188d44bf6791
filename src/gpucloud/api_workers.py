"""More API processes on one port: ``gpucloud up --workers N``.

One Python process answers on one core at most (the GIL), and its controllers take turns with
its API threads. With ``--workers N`` the first process starts N-1 more once it serves; each is
a whole replica of the control plane (docs/ha.md) on the same database and data dir, so it
serves the API and follows the leader lease, while the controllers run in whichever process
holds the lease (the first, which took it at start). The kernel spreads new connections over
the processes (SO_REUSEPORT). A worker stops when the first process does, and the first
process stops its workers when it stops.
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

from gpucloud.settings import Settings

log = logging.getLogger("gpucloud.workers")
PARENT_POLL_S = 1.0
START_WAIT_S = 60.0
STOP_WAIT_S = 15.0


def listening_socket(host: str, port: int, shared: bool) -> socket.socket:
    """The API's socket; ``shared``: other processes of this user may listen on it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def start_workers(settings: Settings) -> list[BaseProcess]:
    """``settings.workers - 1`` more API processes, returned once each serves (or has failed:
    logged, and this process serves without it). Call once this process serves."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads copied
    started = []
    for number in range(1, settings.workers):
        serving = context.Event()
        process = context.Process(
            target=_worker_main, args=(settings, os.getpid(), serving),
            name=f"gpucloud-api-{number}",
        )
        process.start()
        started.append((process, serving))
    deadline = time.monotonic() + START_WAIT_S
    for process, serving in started:
        while not serving.wait(0.1):
            if not process.is_alive() or time.monotonic() > deadline:
                log.error("API worker %s did not start (exit code %s); serving without it",
                          process.pid, process.exitcode)
                break
    return [process for process, _ in started]


def stop_workers(workers: list[BaseProcess]) -> None:
    for process in workers:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    for process in workers:
        process.join(max(deadline - time.monotonic(), 0.1))
        if process.is_alive():
            log.warning("API worker %s did not stop in %g s: killed", process.pid, STOP_WAIT_S)
            process.kill()
            process.join(5)


def _worker_main(settings: Settings, parent_pid: int, serving: EventType) -> None:
    from gpucloud import server
    from gpucloud.cli.up import sigterm_stops

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    threading.Thread(target=_stop_with_parent, args=(parent_pid,), daemon=True).start()
    with sigterm_stops():
        plane = server.build(replace(settings, workers=1))
        server.serve(plane, on_ready=serving.set, shared_port=True)


def _stop_with_parent(parent_pid: int) -> None:
    """A worker never outlives the first process (killed, it cannot stop us itself)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
