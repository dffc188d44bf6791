"""A lean HTTP/1.1 client for the service router's hop to a replica: kept-alive connections per
replica on asyncio streams, the request written in one write, the answer's body relayed as it
arrives (content-length, chunked or until close).

Why not httpx here: the router's added latency is the product (a target of 2 ms at p50), and
on a loaded machine httpx's per-request work costs several times that; this path does only
what relaying needs. It speaks to replicas the control plane started, over plain HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

# Hop-by-hop (RFC 9110 7.6.1): never relayed back; the framing is the router's own.
DROP_RESPONSE = frozenset({b"connection", b"keep-alive", b"transfer-encoding",
                           b"content-length", b"proxy-connection", b"te", b"trailer",
                           b"upgrade"})
HEAD_LIMIT = 1 << 20  # bytes of status line and headers


class UpstreamUnavailable(Exception):
    """The replica refused or dropped the connection before answering: safe to send the
    request to another replica (it was not processed)."""


class UpstreamError(Exception):
    """The replica broke the protocol or timed out after the request was sent."""


@dataclass
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class Answer:
    """A replica's answer whose body is still to be read (``body`` or ``read``)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    length: int | None  # known length; None: chunked or until close
    _conn: _Conn
    _chunked: bool
    _until_close: bool
    _pool: UpstreamPool
    _key: tuple[str, int]
    _reusable: bool
    _read_s: float
    _done: bool = False

    async def body(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives (chunked framing decoded); the connection goes back to the
        pool at the end, or is closed if the reader stops early."""
        try:
            async with asyncio.timeout(None) as deadline:
                if self.length is not None:
                    left = self.length
                    while left:
                        deadline.reschedule(asyncio.get_running_loop().time() + self._read_s)
                        chunk = await self._conn.reader.read(min(left, 1 << 16))
                        if not chunk:
                            raise UpstreamError("the replica closed the connection mid-body")
                        left -= len(chunk)
                        yield chunk
                elif self._chunked:
                    while True:
                        deadline.reschedule(asyncio.get_running_loop().time() + self._read_s)
                        line = await self._conn.reader.readuntil(b"\r\n")
                        size = int(line.split(b";", 1)[0].strip(), 16)
                        if size == 0:
                            while (await self._conn.reader.readuntil(b"\r\n")) != b"\r\n":
                                pass  # trailers: dropped
                            break
                        data = await self._conn.reader.readexactly(size)
                        await self._conn.reader.readexactly(2)
                        yield data
                else:
                    while True:
                        deadline.reschedule(asyncio.get_running_loop().time() + self._read_s)
                        chunk = await self._conn.reader.read(1 << 16)
                        if not chunk:
                            break
                        yield chunk
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                OSError, TimeoutError) as err:
            self.close()
            raise UpstreamError(f"the replica's answer broke off: {type(err).__name__}") from err
        except BaseException:
            self.close()  # the caller went away: this connection is mid-body, not reusable
            raise
        self._finish()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        if self._reusable and not self._until_close:
            self._pool.give_back(self._key, self._conn)
        else:
            self._conn.close()

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.close()


@dataclass
class UpstreamPool:
    connect_s: float = 5.0
    read_s: float = 300.0  # the longest silence within an answer (a model thinking)
    max_idle: int = 64  # per replica
    _idle: dict[tuple[str, int], deque[_Conn]] = field(
        default_factory=lambda: defaultdict(deque))

    def give_back(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle[key]
        if len(idle) >= self.max_idle:
            conn.close()
        else:
            idle.append(conn)

    async def request(self, host: str, port: int, method: str, target: str,
                      headers: dict[str, str], body: bytes) -> Answer:
        """Send, and read the answer's status and headers. A kept-alive connection the replica
        had closed is retried once on a fresh one."""
        key = (host, port)
        head = _request_head(method, target, host, port, headers, body)
        while True:
            reused = bool(self._idle[key])
            conn = self._idle[key].pop() if reused else await self._connect(host, port)
            try:
                try:
                    conn.writer.write(head + body)
                    await conn.writer.drain()
                except (ConnectionError, OSError) as err:
                    raise UpstreamUnavailable(f"sending failed: {type(err).__name__}") from err
                return await self._answer(key, conn, method)
            except UpstreamUnavailable:
                conn.close()
                if reused:
                    continue
                raise
            except BaseException:
                conn.close()
                raise

    async def _connect(self, host: str, port: int) -> _Conn:
        try:
            async with asyncio.timeout(self.connect_s):
                reader, writer = await asyncio.open_connection(host, port, limit=HEAD_LIMIT)
        except (OSError, TimeoutError) as err:
            raise UpstreamUnavailable(f"{host}:{port}: {type(err).__name__}") from err
        return _Conn(reader, writer)

    async def _answer(self, key: tuple[str, int], conn: _Conn, method: str) -> Answer:
        try:
            async with asyncio.timeout(self.read_s):
                while True:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                    status, version, headers = _parse_head(raw)
                    if status >= 200 or status == 101:
                        break  # 1xx (e.g. 103 Early Hints): wait for the final answer
        except asyncio.IncompleteReadError as err:
            if not err.partial:  # closed before a byte of answer: the request was not served
                raise UpstreamUnavailable("the replica closed the connection") from err
            raise UpstreamError("the replica's answer broke off in its headers") from err
        except (ConnectionError, OSError) as err:
            raise UpstreamUnavailable(f"the connection failed: {type(err).__name__}") from err
        except (asyncio.LimitOverrunError, ValueError, TimeoutError) as err:
            raise UpstreamError(f"the replica's answer is not valid HTTP/1.1 "
                                f"({type(err).__name__})") from err
        values = {k: v for k, v in headers}
        connection = values.get(b"connection", b"").lower()
        reusable = version == b"HTTP/1.1" and b"close" not in connection
        chunked = b"chunked" in values.get(b"transfer-encoding", b"").lower()
        length: int | None = None
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        if no_body:
            length = 0
        elif not chunked and b"content-length" in values:
            length = int(values[b"content-length"])
        until_close = length is None and not chunked
        return Answer(status, [(k, v) for k, v in headers if k not in DROP_RESPONSE], length,
                      conn, chunked, until_close, self, key, reusable, self.read_s)

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _request_head(method: str, target: str, host: str, port: int, headers: dict[str, str],
                  body: bytes) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(raw: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    status = int(rest[:3])
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise ValueError("a header line without ':'")
        headers.append((name.strip().lower(), value.strip()))
    return status, version, headers
