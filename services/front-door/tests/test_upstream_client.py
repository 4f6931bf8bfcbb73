"""The lean upstream client (upstream.py) against a real socket server: framing, keep-alive, and failures as
the httpx exceptions the proxy's resend rules know."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from relearn.front_door.upstream import UpstreamClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


async def test_one_write_keep_alive_and_both_framings() -> None:
    client = UpstreamClient()
    seen: list[tuple[bytes, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                head, body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                break
            seen.append((head, body))
            if b"chunked" in head:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            else:
                answer = b'{"ok":' + str(len(body)).encode() + b"}"
                writer.write(
                    b'HTTP/1.1 201 Created\r\ncontent-type: application/fhir+json\r\nETag: W/"1"\r\n'
                    b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
                )
            await writer.drain()
        writer.close()

    server, base = await _serve(handler)
    async with server:
        created = await client.request(
            "POST", f"{base}/fhir/Observation?x=1", [(b"content-type", b"application/fhir+json")], b"{}", 5
        )
        assert created.status_code == 201 and created.content == b'{"ok":2}'
        assert ("ETag", 'W/"1"') in created.headers
        chunked = await client.request("GET", f"{base}/fhir/Observation/chunked", [], b"", 5)
        assert chunked.status_code == 200 and chunked.content == b"abcde"
        await client.aclose()
    head, body = seen[0]
    assert head.startswith(b"POST /fhir/Observation?x=1 HTTP/1.1\r\n") and body == b"{}"
    assert b"content-length: 2\r\n" in head
    assert connections == 1  # the second request reused the pooled connection


async def test_a_closed_keep_alive_connection_is_not_reused_and_a_drop_is_remote_protocol_error() -> None:
    client = UpstreamClient()
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        await _read_request(reader)
        if calls == 3:  # hang up without answering
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # the server ends the keep-alive connection after each answer

    server, base = await _serve(handler)
    async with server:
        assert (await client.request("GET", f"{base}/a", [], b"", 5)).content == b"ok"
        await asyncio.sleep(0.05)  # the close reaches the pooled connection
        assert (await client.request("GET", f"{base}/b", [], b"", 5)).content == b"ok"
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.RemoteProtocolError):
            await client.request("GET", f"{base}/c", [], b"", 5)
        await client.aclose()


async def test_refused_and_silent_services_are_connect_error_and_timeout() -> None:
    client = UpstreamClient()
    server, base = await _serve(lambda r, w: asyncio.sleep(2))
    async with server:
        with pytest.raises(httpx.ReadTimeout):
            await client.request("GET", f"{base}/slow", [], b"", 0.2)
    with pytest.raises(httpx.ConnectError):
        await client.request("GET", f"{base}/gone", [], b"", 2)
    await client.aclose()
