"""``WS /v1/instances/{ref}/shell``: an interactive shell inside a running instance, as a pty
relayed over a websocket.

Protocol: binary frames are terminal bytes, both ways. Text frames are JSON control messages:
the client sends ``{"resize": [rows, cols]}``; the server ends with ``{"exit": CODE}`` (or
``{"error": "..."}``) and closes. The shell runs with the instance's own environment (its
GPUs, HOME, volumes, image) in its home directory, and is ended (SIGHUP, then SIGKILL) when the
connection closes or the instance stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import struct
import subprocess
import termios

from fastapi import WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from gpucloud.api import instance_access
from gpucloud.api.deps import Platform
from gpucloud.api.routing import api_router
from gpucloud.core.errors import GpucloudError
from gpucloud.engines.base import ShellContext
from gpucloud.engines.instance_host import shell_context

router = api_router(tags=["instances"])
log = logging.getLogger("gpucloud.terminal")
WATCH_S = 1.0  # how often a session checks that its instance still runs
READ_CHUNK = 65536


@router.websocket("/v1/instances/{ref}/shell")
async def shell(websocket: WebSocket, ref: str, rows: int = 24, cols: int = 80) -> None:
    platform: Platform = websocket.app.state.platform
    try:
        who = await run_in_threadpool(
            instance_access.caller, platform, websocket.headers, websocket.cookies,
            websocket.client.host if websocket.client is not None else "unknown",
            getattr(websocket.app.state, "console_sessions", None))
        target = await run_in_threadpool(instance_access.running, platform, who, ref)
        context = await run_in_threadpool(shell_context, platform.ctx.engine, target.engine_ref)
    except GpucloudError as err:
        await deny(websocket, err)
        return
    await websocket.accept()
    try:
        process, master = _spawn(context, rows, cols)
    except OSError as err:
        await websocket.send_text(json.dumps({"error": f"cannot start a shell: {err}"}))
        await websocket.close(1011)
        return
    log.info("shell %s opened into %s", process.pid, target.id)
    try:
        await _relay(websocket, platform, target, process, master)
    finally:
        _end(process, master)


async def deny(websocket: WebSocket, err: GpucloudError) -> None:
    """Refuse the handshake with the same problem+json an HTTP request would get, where the
    server can send one; else close with 4000 + the HTTP status and the sentence."""
    status, response = instance_access.error_response(err)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)  # type: ignore[arg-type]
    else:
        await websocket.close(code=4000 + status, reason=str(err)[:120])


def _spawn(context: ShellContext, rows: int, cols: int) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = os.openpty()
    _set_size(master, rows, cols)
    try:
        process = subprocess.Popen(
            context.argv, stdin=slave, stdout=slave, stderr=slave, cwd=context.cwd,
            env=dict(context.env), start_new_session=True, close_fds=True,
            preexec_fn=_take_terminal,  # noqa: PLW1509 - only an ioctl before exec
        )
    finally:
        os.close(slave)
    os.set_blocking(master, False)
    return process, master


def _take_terminal() -> None:
    """In the child: the pty becomes its controlling terminal (job control, Ctrl-C)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, rows: int, cols: int) -> None:
    rows, cols = max(1, min(rows, 1000)), max(1, min(cols, 1000))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


async def _relay(websocket: WebSocket, platform: Platform,
                 target: instance_access.RunningInstance, process: subprocess.Popen[bytes],
                 master: int) -> None:
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: the shell and everything it started closed the terminal
            data = b""
        if not data:
            loop.remove_reader(master)
        output.put_nowait(data or None)

    loop.add_reader(master, readable)
    tasks = [
        asyncio.create_task(_to_client(websocket, output)),
        asyncio.create_task(_from_client(websocket, master)),
        asyncio.create_task(_watch(platform, target, process)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_reader(master)
        for task in tasks:
            task.cancel()
    ended = next(iter(done))
    if ended is tasks[1]:
        return  # the client went away
    message: dict[str, object]
    if ended is tasks[2] and ended.result() == "stopped":
        message = {"error": f"instance {target.name} stopped; the shell was ended"}
    else:
        code = await run_in_threadpool(_wait_exit, process)
        message = {"exit": code}
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await websocket.send_text(json.dumps(message))
        await websocket.close(1000)


async def _to_client(websocket: WebSocket, output: asyncio.Queue[bytes | None]) -> None:
    while (data := await output.get()) is not None:
        await websocket.send_bytes(data)


async def _from_client(websocket: WebSocket, master: int) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            await _write_all(master, message["bytes"])
        elif message.get("text"):
            _control(master, message["text"])


async def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:  # the shell is not reading: wait a little, never block
            await asyncio.sleep(0.01)
            continue
        data = data[written:]


def _control(master: int, text: str) -> None:
    try:
        message = json.loads(text)
        rows, cols = message["resize"]
        _set_size(master, int(rows), int(cols))
    except (ValueError, KeyError, TypeError) as err:
        log.debug("ignored a control message %r: %s", text[:80], err)


async def _watch(platform: Platform, target: instance_access.RunningInstance,
                 process: subprocess.Popen[bytes]) -> str:
    while True:
        await asyncio.sleep(WATCH_S)
        if process.poll() is not None:
            await asyncio.sleep(0.1)  # let the last output drain first
            return "exited"
        if not await run_in_threadpool(instance_access.still_running, platform, target):
            return "stopped"


def _wait_exit(process: subprocess.Popen[bytes]) -> int:
    try:
        code = process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return -1
    return code if code >= 0 else 128 - code


def _end(process: subprocess.Popen[bytes], master: int) -> None:
    """The shell's whole session goes: SIGHUP as a closed terminal would send, then SIGKILL."""
    with contextlib.suppress(OSError):
        os.close(master)
    # Only while its leader is unreaped: after that the group's number may be reused.
    if process.poll() is not None:
        return
    for sig in (signal.SIGHUP, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=1)
            return
        except subprocess.TimeoutExpired:
            continue

