"""A small OpenAI-compatible chat server with a deterministic stand-in model (no weights).

    PORT=8000 python examples/chat_server.py

Routes: ``POST /v1/chat/completions`` (``"stream": true`` answers with server-sent events,
one chunk per word, as OpenAI's API does), ``GET /v1/models``, ``GET /health`` (readiness).
The "model" echoes the last user message back word by word, so answers are reproducible.

For tests and benchmarks, environment variables shape it:

- ``CHAT_DELAY_S``: pause before each streamed chunk (and the whole answer), default 0;
- ``CHAT_VERSION``: reported in every answer (``system_fingerprint``) and by ``/health``;
- ``CHAT_BROKEN_FILE``: while this file exists, ``/health`` answers 503 (readiness fails);
  ``{port}`` in it is replaced by ``$PORT``, so one replica of several can be broken;
- ``CHAT_STARTUP_S``: sleep this long before listening (a slow model load).

Served by uvicorn on ``$PORT`` (a gpucloud service sets it per replica). Every answer carries
``X-Served-By: <port>``, which tells a replica's answers apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "echo-1"
VERSION = os.environ.get("CHAT_VERSION", "v1")
DELAY_S = float(os.environ.get("CHAT_DELAY_S", "0"))
PORT = os.environ.get("PORT", "8000")
BROKEN = os.environ.get("CHAT_BROKEN_FILE", "").replace("{port}", PORT)
SERVED_BY = {"X-Served-By": PORT}


def reply_to(messages: list[dict[str, Any]]) -> list[str]:
    """The stand-in model: the last user message's words, or a greeting."""
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            words: list[str] = message["content"].split()
            if words:
                return words
    return ["Hello!"]


def _usage(messages: list[dict[str, Any]], words: list[str]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    return {"prompt_tokens": prompt, "completion_tokens": len(words),
            "total_tokens": prompt + len(words)}


async def completions(request: Request) -> Response:
    try:
        body = await request.json()
        messages = list(body["messages"])
    except (ValueError, KeyError, TypeError):
        return JSONResponse({"error": {"message": "send JSON with a 'messages' list",
                                       "type": "invalid_request_error"}}, status_code=400)
    words = reply_to(messages)
    ident = f"chatcmpl-{time.monotonic_ns()}"
    created = int(time.time())
    if body.get("stream"):
        return StreamingResponse(_stream(ident, created, words), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", **SERVED_BY})
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    return JSONResponse({
        "id": ident, "object": "chat.completion", "created": created, "model": MODEL,
        "system_fingerprint": VERSION,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": " ".join(words)}}],
        "usage": _usage(messages, words),
    }, headers=SERVED_BY)


async def _stream(ident: str, created: int, words: list[str]) -> AsyncIterator[bytes]:
    def event(delta: dict[str, str], finish: str | None = None) -> bytes:
        chunk = {"id": ident, "object": "chat.completion.chunk", "created": created,
                 "model": MODEL, "system_fingerprint": VERSION,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""})
    for i, word in enumerate(words):
        if DELAY_S:
            await asyncio.sleep(DELAY_S)
        yield event({"content": word if i == 0 else f" {word}"})
    yield event({}, "stop")
    yield b"data: [DONE]\n\n"


async def models(_: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model",
                                                     "owned_by": "gpucloud-example"}]})


async def health(_: Request) -> Response:
    if BROKEN and Path(BROKEN).exists():
        return JSONResponse({"status": "broken", "version": VERSION}, status_code=503,
                            headers=SERVED_BY)
    return JSONResponse({"status": "ok", "version": VERSION}, headers=SERVED_BY)


app = Starlette(routes=[
    Route("/v1/chat/completions", completions, methods=["POST"]),
    Route("/v1/models", models),
    Route("/health", health),
])


def main() -> None:
    import uvicorn

    startup = float(os.environ.get("CHAT_STARTUP_S", "0"))
    if startup:
        time.sleep(startup)
    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=int(PORT),
                log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
