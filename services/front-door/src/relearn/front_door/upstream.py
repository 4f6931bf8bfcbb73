"""A lean HTTP/1.1 client for the FHIR proxy hop: pooled keep-alive connections on asyncio streams.

Performance (issue 16, docs/performance.md): under the CRUD mix httpx/httpcore/h11/anyio were about half of
the front door's CPU, and every proxied request was written to the service in two writes (head, then body).
This client writes a request in one write and reads the answer with ``Content-Length`` or chunked framing,
nothing more: it speaks only to our own services (plain HTTP/1.1 on the configured upstream URLs).

Its failures are httpx's exception types, so the proxy's rules stay one set (``proxy.may_resend``):
``httpx.ConnectError`` when nothing was sent, ``httpx.RemoteProtocolError`` when the service closed the
connection before answering (a pooled keep-alive connection it had timed out), ``httpx.ReadTimeout`` when it
did not answer within the timeout. A connection is pooled again only after a complete answer that did not
say ``Connection: close``; a cancelled or failed exchange closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

_MAX_HEAD_BYTES = 64 * 1024


@dataclass
class UpstreamResponse:
    status_code: int
    headers: list[tuple[str, str]]
    content: bytes


@dataclass
class _Pool:
    host: str
    port: int
    idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=deque)
    # At most this many exchanges at once per service (httpx's pool had max_connections=200); the rest wait,
    # within their timeout.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(200))


class UpstreamClient:
    """Keep-alive connections per upstream ``scheme://host:port`` (``http`` only), at most ``max_idle`` idle
    ones each; ``aclose`` closes them."""

    def __init__(self, *, max_idle: int = 64) -> None:
        self._pools: dict[str, _Pool] = {}
        self._max_idle = max_idle

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> UpstreamResponse:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise httpx.UnsupportedProtocol(f"the lean upstream client speaks plain http only: {url}")
        port = parts.port or 80
        key = f"{parts.hostname}:{port}"
        pool = self._pools.get(key) or self._pools.setdefault(key, _Pool(parts.hostname, port))
        target = parts.path or "/"
        if parts.query:
            target = f"{target}?{parts.query}"
        head = [f"{method} {target} HTTP/1.1\r\nhost: {key}\r\n".encode("latin-1")]
        head += [k + b": " + v + b"\r\n" for k, v in headers if k.lower() not in (b"host", b"content-length")]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(b"content-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        data = b"".join(head) + body
        try:
            async with asyncio.timeout(timeout_s), pool.slots:
                return await self._exchange(pool, data, method)
        except TimeoutError:
            raise httpx.ReadTimeout(f"{key} did not answer within {timeout_s:g}s") from None

    async def _exchange(self, pool: _Pool, data: bytes, method: str) -> UpstreamResponse:
        reader, writer = await self._connection(pool)
        done = False
        try:
            writer.write(data)
            await writer.drain()
            status, headers, content, keep = await _read_response(reader, method)
            done = True
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            message = f"Server disconnected without sending a response ({type(exc).__name__})"
            raise httpx.RemoteProtocolError(message) from exc
        finally:
            if not done or not keep or len(pool.idle) >= self._max_idle:
                writer.close()
        if keep and len(pool.idle) < self._max_idle:
            pool.idle.append((reader, writer))
        return UpstreamResponse(status, headers, content)

    async def _connection(self, pool: _Pool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while pool.idle:
            reader, writer = pool.idle.pop()  # the most recently used: the least likely to have timed out
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        try:
            return await asyncio.open_connection(pool.host, pool.port, limit=_MAX_HEAD_BYTES)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {pool.host}:{pool.port}: {exc}") from exc

    async def aclose(self) -> None:
        for pool in self._pools.values():
            while pool.idle:
                _, writer = pool.idle.pop()
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def _read_response(
    reader: asyncio.StreamReader, method: str
) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    """Status, headers, body and whether the connection may be used again."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        status = int(rest[:3])
        if not 100 <= status < 200:  # an interim answer (100 Continue) is skipped
            break
    headers: list[tuple[str, str]] = []
    length: int | None = None
    chunked = False
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        lowered = name.lower()
        if lowered == "content-length":
            length = int(value)
        elif lowered == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif lowered == "connection":
            keep = keep and "close" not in value.lower()
    if method == "HEAD" or status in (204, 304):
        content = b""
    elif chunked:
        content = await _read_chunked(reader)
    elif length is not None:
        content = await reader.readexactly(length)
    else:  # no framing: the body runs to the end of the connection
        content = await reader.read()
        keep = False
    return status, headers, content, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
