"""Reverse-proxy plumbing shared by the routes that reach a process inside a workload (an
instance's Jupyter, a service's replicas): which headers never cross, and an upstream answer
streamed back unbuffered (server-sent events and chunked bodies arrive as they are sent)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import httpx
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

# Hop-by-hop (RFC 9110 7.6.1) or ours: never forwarded.
DROP_REQUEST = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te",
                          "upgrade", "proxy-authorization", "authorization", "cookie",
                          "content-length"})
# content-encoding stays: the body is relayed raw (still compressed), as the service router does.
DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})


def request_headers(items: Iterable[tuple[str, str]],
                    cookies: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers less the hop-by-hop ones and its gpucloud credentials (the
    console's cookies go, the upstream's own cookies pass)."""
    from gpucloud.console.auth import SESSION_COOKIE, SIGNIN_COOKIE

    headers = {k: v for k, v in items if k.lower() not in DROP_REQUEST}
    theirs = "; ".join(f"{k}={v}" for k, v in cookies.items()
                       if k not in (SESSION_COOKIE, SIGNIN_COOKIE))
    if theirs:
        headers["cookie"] = theirs
    return headers


def streamed(answer: httpx.Response, on_done: Callable[[], None] | None = None
             ) -> StreamingResponse:
    """``answer`` (sent with ``stream=True``) as the response, chunk by chunk as it arrives;
    ``on_done`` runs once when the body has been relayed or the caller went away."""
    done = _Once(on_done)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        finally:
            done()

    async def close() -> None:
        await answer.aclose()
        done()

    kept = [(k, v) for k, v in answer.headers.multi_items() if k.lower() not in DROP_RESPONSE]
    response = StreamingResponse(body(), status_code=answer.status_code,
                                 background=BackgroundTask(close))
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
    return response


class _Once:
    def __init__(self, action: Callable[[], None] | None) -> None:
        self._action = action

    def __call__(self) -> None:
        action, self._action = self._action, None
        if action is not None:
            action()
