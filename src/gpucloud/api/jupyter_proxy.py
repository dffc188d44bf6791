"""``/v1/instances/{ref}/jupyter/...``: the instance's Jupyter server, through the control plane.

The caller authenticates to gpucloud (bearer token or console cookie); the proxy then speaks
to Jupyter with the instance's own Jupyter token, which never leaves the control plane. HTTP
is streamed both ways; websockets (kernels, terminals) are relayed frame by frame. Jupyter's
own cookies (``_xsrf``) pass through; gpucloud's credentials are never forwarded to it.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import websockets
from fastapi import Request, WebSocket
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from websockets.asyncio.client import ClientConnection

from gpucloud.api import http_proxy, instance_access
from gpucloud.api.deps import Platform
from gpucloud.api.routing import api_router
from gpucloud.api.terminal import deny
from gpucloud.core.errors import Conflict, GpucloudError
from gpucloud.core.instances import jupyter_base_url
from gpucloud.core.tenancy import Principal
from gpucloud.engines.instance_host import JupyterAddress, jupyter_address

router = api_router(tags=["instances"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=httpx.Timeout(30, read=300))
    return _client


@router.get("/v1/instances/{ref}/jupyter", include_in_schema=False)
def jupyter_root(ref: str) -> RedirectResponse:
    return RedirectResponse(f"/v1/instances/{ref}/jupyter/", status_code=307)


@router.api_route("/v1/instances/{ref}/jupyter/{path:path}", methods=METHODS,
                  include_in_schema=False)
async def jupyter_http(ref: str, path: str, request: Request) -> Response:
    platform: Platform = request.app.state.platform
    try:
        target, address = await run_in_threadpool(_locate, platform, request, ref)
    except GpucloudError as err:
        return instance_access.error_response(err)[1]  # type: ignore[return-value]
    url = f"http://{address.host}:{address.port}{jupyter_base_url(target.id)}{path}"
    headers = _forward_headers(request.headers.items(), request.cookies, target.jupyter_token)
    upstream = _http().build_request(request.method, url, params=request.query_params,
                                     headers=headers, content=request.stream())
    try:
        answer = await _http().send(upstream, stream=True)
    except httpx.HTTPError as err:
        return instance_access.error_response(Conflict(
            f"instance {target.name}: Jupyter does not answer ({type(err).__name__}); it may "
            "still be starting, try again in a few seconds"))[1]  # type: ignore[return-value]
    return http_proxy.streamed(answer)


@router.websocket("/v1/instances/{ref}/jupyter/{path:path}")
async def jupyter_ws(websocket: WebSocket, ref: str, path: str) -> None:
    platform: Platform = websocket.app.state.platform
    try:
        target, address = await run_in_threadpool(_locate, platform, websocket, ref)
    except GpucloudError as err:
        await deny(websocket, err)
        return
    query = f"?{websocket.url.query}" if websocket.url.query else ""
    url = f"ws://{address.host}:{address.port}{jupyter_base_url(target.id)}{path}{query}"
    headers = _forward_headers(
        [(k, v) for k, v in websocket.headers.items() if not k.lower().startswith("sec-websocket")
         and k.lower() != "origin"], websocket.cookies, target.jupyter_token)
    protocols = websocket.scope.get("subprotocols") or None
    try:
        upstream = await websockets.connect(
            url, additional_headers=headers, subprotocols=protocols,
            max_size=None, open_timeout=10)
    except (OSError, websockets.WebSocketException) as err:
        await deny(websocket, Conflict(f"instance {target.name}: Jupyter refused the "
                                       f"websocket ({err})"))
        return
    async with upstream:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _relay(websocket, upstream)


async def _relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def down() -> None:
        async for message in upstream:
            if isinstance(message, bytes):
                await websocket.send_bytes(message)
            else:
                await websocket.send_text(message)

    async def up() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await upstream.send(message["bytes"])
            elif message.get("text") is not None:
                await upstream.send(message["text"])

    tasks = [asyncio.create_task(down()), asyncio.create_task(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    with contextlib.suppress(RuntimeError, Exception):
        await websocket.close()


def _locate(platform: Platform, connection: Request | WebSocket,
            ref: str) -> tuple[instance_access.RunningInstance, JupyterAddress]:
    peer = connection.client.host if connection.client is not None else "unknown"
    who: Principal = instance_access.caller(
        platform, connection.headers, connection.cookies, peer,
        getattr(connection.app.state, "console_sessions", None))
    target = instance_access.running(platform, who, ref)
    if target.jupyter_token is None:
        raise Conflict(f"instance {target.name} was created without Jupyter (--jupyter)")
    address = jupyter_address(platform.ctx.engine, target.id, target.run)
    if address is None:
        raise Conflict(f"instance {target.name}: Jupyter is still starting; try again in a few "
                       "seconds")
    return target, address


def _forward_headers(items: object, cookies: dict[str, str],
                     token: str | None) -> dict[str, str]:
    headers = http_proxy.request_headers(items, cookies)  # type: ignore[arg-type]
    headers["authorization"] = f"token {token}"
    return headers
