"""The router's HTTP/1.1 client against real sockets: each framing (length, chunked, until
close, no body), connections kept alive and reused, a kept-alive connection the server closed
is retried on a fresh one, a refused connection is 'unavailable' (safe to resend), an answer
broken off mid-body is an error."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from gpucloud.api.upstream import UpstreamError, UpstreamPool, UpstreamUnavailable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def run(coro: Awaitable[None]) -> None:
    # In a thread of its own: an earlier test in this process (Playwright's sync API) may have
    # left an event loop running in the main thread, where asyncio.run() refuses to start.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, asyncio.wait_for(coro, 20)).result()


def test_framings_and_keep_alive() -> None:
    connections: list[int] = []
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\n"
        b"content-length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\n\r\nuntil the end",
    ]
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while answers:
                seen.append(await read_request(reader))
                answer = answers.pop(0)
                writer.write(answer)
                await writer.drain()
                if answer.startswith(b"HTTP/1.0"):
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    async def main() -> None:
        server, port = await serve(handler)
        pool = UpstreamPool()
        first = await pool.request("127.0.0.1", port, "POST", "/v1/x?q=1",
                                   {"content-type": "application/json"}, b'{"p":2}')
        assert (first.status, first.length, await first.read()) == (200, 7, b'{"a":1}')
        assert (b"content-type", b"application/json") in first.headers
        assert all(k != b"content-length" for k, _ in first.headers)
        chunked = await pool.request("127.0.0.1", port, "GET", "/s", {}, b"")
        assert chunked.length is None
        assert [c async for c in chunked.body()] == [b"hello", b" ", b"world"]
        empty = await pool.request("127.0.0.1", port, "DELETE", "/d", {}, b"")
        assert (empty.status, await empty.read()) == (204, b"")
        hinted = await pool.request("127.0.0.1", port, "PUT", "/p", {}, b"")
        assert (hinted.status, await hinted.read()) == (201, b"ok")
        old = await pool.request("127.0.0.1", port, "GET", "/old", {}, b"")
        assert await old.read() == b"until the end"
        assert len(connections) == 1, "the connection was not kept alive"
        assert seen[0][0].startswith(b"POST /v1/x?q=1 HTTP/1.1\r\nhost: 127.0.0.1:")
        assert seen[0][1] == b'{"p":2}'
        assert b"content-length: 0" in seen[3][0]  # a PUT without a body says so
        server.close()
        pool.close()

    run(main())


def test_a_closed_kept_alive_connection_is_retried_and_refusal_is_unavailable() -> None:
    async def once_then_close(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1")
        await writer.drain()
        writer.close()  # an idle keep-alive connection the server drops

    async def main() -> None:
        server, port = await serve(once_then_close)
        pool = UpstreamPool()
        for _ in range(3):
            answer = await pool.request("127.0.0.1", port, "GET", "/", {}, b"")
            assert await answer.read() == b"1"
            await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        with pytest.raises(UpstreamUnavailable):
            await pool.request("127.0.0.1", port, "GET", "/", {}, b"")
        pool.close()

    run(main())


def test_an_answer_broken_off_mid_body_is_an_error() -> None:
    async def short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
        await writer.drain()
        writer.close()

    async def main() -> None:
        server, port = await serve(short)
        pool = UpstreamPool()
        answer = await pool.request("127.0.0.1", port, "GET", "/", {}, b"")
        with pytest.raises(UpstreamError):
            await answer.read()
        server.close()
        pool.close()

    run(main())
