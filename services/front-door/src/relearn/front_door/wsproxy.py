"""Proxy a WebSocket to the service that serves it, both ways, close codes included.

The front door opens the upstream connection first (with the caller's query string, so
``?access_token=``/``?session=`` reach the service, and its ``Authorization`` header), then
accepts the caller and relays text and binary messages in both directions. When either side
closes, the other is closed with the same code and reason: a service's refusal (4401, 4403,
4404 ... = 4000 + the HTTP status, see ``relearn.shared.auth.websocket``) reaches the caller
unchanged. What the front door itself refuses follows the same convention: 4404 for a path no
service serves, 4503/4504 when the service cannot be reached or does not answer in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Literal

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from relearn.shared.auth import close_reason

logger = logging.getLogger(__name__)

# The handshake headers a service needs: identity and tracing.
_PASS_HEADERS = ("authorization", "x-request-id")
# Codes that may not be sent in a close frame (RFC 6455 §7.4.1): "no status", "abnormal", "TLS".
_NO_STATUS, _ABNORMAL, _TLS = 1005, 1006, 1015
_BAD_GATEWAY, _GOING_AWAY, _NORMAL = 1014, 1001, 1000


async def refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept (so the caller can read the code) and close with ``code`` and ``reason``."""
    if websocket.client_state is WebSocketState.CONNECTING:
        await websocket.accept()
    await websocket.close(code=code, reason=close_reason(reason))


def _upstream_url(base: str, path: str, query: str) -> str:
    scheme, sep, rest = base.partition("://")
    ws_scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    url = f"{ws_scheme}{sep}{rest.rstrip('/')}{path}"
    return f"{url}?{query}" if query else url


def _to_caller(code: int | None, reason: str | None) -> tuple[int, str]:
    """The close frame for the caller when the service's side ended with ``code``."""
    if code is None or code == _NO_STATUS:
        return _NORMAL, reason or ""
    if code in (_ABNORMAL, _TLS):
        return _BAD_GATEWAY, "The service's connection ended without a close frame"
    return code, reason or ""


def _to_service(code: int | None) -> int:
    """The close code for the service when the caller went away with ``code``."""
    if code is None or code == _NO_STATUS:
        return _NORMAL
    if code in (_ABNORMAL, _TLS):
        return _GOING_AWAY
    return code


async def proxy_websocket(
    websocket: WebSocket, base: str, *, open_timeout_s: float, max_message_bytes: int
) -> None:
    """Relay ``websocket`` to the same path and query on the service at ``base`` until one side closes."""
    url = _upstream_url(base, websocket.url.path, websocket.url.query)
    headers = [(k, v) for k, v in websocket.headers.items() if k.lower() in _PASS_HEADERS]
    offered = [Subprotocol(p) for p in websocket.scope.get("subprotocols", [])]
    try:
        upstream = await connect(
            url,
            additional_headers=headers,
            subprotocols=offered or None,
            proxy=None,
            open_timeout=open_timeout_s,
            max_size=max_message_bytes,
            compression=None,
        )
    except InvalidStatus as exc:  # the service answered the handshake with an HTTP error
        status = exc.response.status_code
        code = 4000 + status if 400 <= status < 600 else _BAD_GATEWAY
        await refuse(websocket, code, f"The service refused the WebSocket handshake (HTTP {status})")
        return
    except TimeoutError:
        await refuse(websocket, 4504, "The service did not answer the WebSocket handshake in time")
        return
    except (OSError, InvalidHandshake) as exc:
        logger.warning("upstream websocket unavailable", extra={"url": url.split("?")[0], "error": str(exc)})
        await refuse(websocket, 4503, "The service behind this WebSocket is unavailable")
        return
    try:
        await websocket.accept(subprotocol=upstream.subprotocol)
        await _relay(websocket, upstream)
    finally:
        await upstream.close()


async def _relay(websocket: WebSocket, upstream: ClientConnection) -> None:
    async def caller_to_service() -> Literal["caller", "service"]:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code = _to_service(message.get("code"))
                await upstream.close(code=code, reason=message.get("reason") or "")
                return "caller"
            try:
                if message.get("text") is not None:
                    await upstream.send(message["text"])
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
            except ConnectionClosed:
                return "service"  # service_to_caller passes its close on

    async def service_to_caller() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, str):
                    await websocket.send_text(data)
                else:
                    await websocket.send_bytes(data)
        code, reason = _to_caller(upstream.close_code, upstream.close_reason)
        await websocket.close(code=code, reason=close_reason(reason))

    inbound = asyncio.create_task(caller_to_service())
    outbound = asyncio.create_task(service_to_caller())
    try:
        done, _ = await asyncio.wait({inbound, outbound}, return_when=asyncio.FIRST_COMPLETED)
        service_closed = (
            inbound in done
            and not inbound.cancelled()
            and inbound.exception() is None
            and inbound.result() == "service"
        )
        if service_closed:
            await asyncio.wait({outbound})  # let the service's close code through
    finally:
        for task in (inbound, outbound):
            task.cancel()
        for task in (inbound, outbound):
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect, ConnectionClosed, RuntimeError, OSError):
                pass  # the other side is already gone
            except Exception:
                logger.exception("websocket relay failed")
