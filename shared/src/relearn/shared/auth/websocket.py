"""Bearer tokens on WebSocket connections.

Browsers cannot set an ``Authorization`` header on a WebSocket handshake, so a WebSocket route takes the
token from that header (preferred) or from the ``access_token`` query parameter (RFC 6750 §2.3). It is
verified with the same ``app.state.token_verifier`` as HTTP routes. A refusal is sent as a close frame
(after accepting the handshake, so the client can read it) whose code is 4000 + the HTTP status the same
request would get over HTTP (4401 no/invalid token, 4403 forbidden, 4404 not found, 4400 bad request) and
whose reason is the error's diagnostics.

Query-string tokens can end up in proxy and server logs: prefer the header, and short-lived tokens.
"""

from __future__ import annotations

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from relearn.shared.auth.dependency import TokenVerifier
from relearn.shared.auth.principal import Principal
from relearn.shared.fhir.errors import FhirError, Unauthorized

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code


def websocket_token(websocket: WebSocket) -> str | None:
    """The bearer token of a WebSocket handshake: ``Authorization: Bearer`` or ``?access_token=``."""
    header = websocket.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return websocket.query_params.get("access_token") or None


async def authenticate_websocket(websocket: WebSocket) -> Principal:
    """Verify the handshake's token; raises :class:`Unauthorized` (401) like ``PrincipalDep`` does.

    Verification may fetch the issuer's keys, so it runs in the thread pool.
    """
    token = websocket_token(websocket)
    if token is None:
        raise Unauthorized(
            "A bearer token is required (Authorization header or access_token query parameter)",
            headers={"WWW-Authenticate": 'Bearer realm="relearn"'},
        )
    verifier: TokenVerifier = websocket.app.state.token_verifier
    return await run_in_threadpool(verifier.verify, token)


def close_code(error: FhirError) -> int:
    """The WebSocket close code for an error: 4000 + its HTTP status (4401, 4403, 4404 ...)."""
    return 4000 + error.status_code


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame (123 bytes of UTF-8)."""
    data = text.encode()
    if len(data) <= _MAX_REASON_BYTES:
        return text
    return data[: _MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


async def refuse(websocket: WebSocket, error: FhirError) -> None:
    """Accept (if not yet) and close with the error's code and diagnostics as the reason."""
    if websocket.client_state is WebSocketState.CONNECTING:
        await websocket.accept()
    diagnostics = error.issues[0].diagnostics if error.issues else str(error)
    await websocket.close(code=close_code(error), reason=close_reason(diagnostics))
