"""Bearer tokens on WebSocket connections.

Browsers cannot set an ``Authorization`` header on a WebSocket handshake, so a WebSocket route takes the
token from that header (preferred) or from the ``access_token`` query parameter (RFC 6750 §2.3). It is
verified with the same ``app.state.token_verifier`` as HTTP routes. A refusal is sent as a close frame
(after accepting the handshake, so the client can read it) whose code is 4000 + the HTTP status the same
request would get over HTTP (4401 no/invalid token, 4403 forbidden, 4404 not found, 4400 bad request) and
whose reason is the error's diagnostics.

Query-string tokens can end up in proxy and server logs: prefer the header, and short-lived tokens.

A token is only checked when the socket opens, so an open socket must not outlive it:
:class:`SocketCredentials` holds the connection's principal, tells when its token has expired (``exp``; the
socket is then closed with 4401 and the reason ``token expired``, see :func:`close_expired`) and lets the
client swap in a fresh token without reconnecting: a message ``{"type": "token", "accessToken": "..."}``
(:func:`token_refresh`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketState

from relearn.shared.audit_context import note_principal
from relearn.shared.auth.dependency import TokenVerifier
from relearn.shared.auth.principal import Principal
from relearn.shared.fhir.errors import FhirError, Forbidden, Unauthorized

_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code
# A refresh message is a token (at most 16 kB, see tokens.py) and a few bytes of JSON around it.
_MAX_REFRESH_CHARS = 17 * 1024

TOKEN_EXPIRED_CODE = 4401
TOKEN_EXPIRED_REASON = "token expired"


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
    principal = await run_in_threadpool(verifier.verify, token)
    note_principal(principal)
    return principal


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


async def close_expired(websocket: WebSocket) -> None:
    """Close an open socket whose token has expired: code 4401, reason ``token expired``."""
    if WebSocketState.CONNECTED is websocket.application_state is websocket.client_state:
        await websocket.close(code=TOKEN_EXPIRED_CODE, reason=TOKEN_EXPIRED_REASON)


def token_refresh(raw: str | bytes) -> str | None:
    """The token of a refresh message ``{"type": "token", "accessToken": "..."}``; None for other messages.

    Cheap for anything else (a substring test; the message is parsed only when it is small and names a
    ``"type"``). A refresh message without a string ``accessToken`` gives ``""``, which does not verify.
    """
    if len(raw) > _MAX_REFRESH_CHARS:
        return None
    if ('"type"' not in raw) if isinstance(raw, str) else (b'"type"' not in raw):
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or body.get("type") != "token":
        return None
    token = body.get("accessToken")
    return token if isinstance(token, str) else ""


class SocketCredentials:
    """The principal of an open WebSocket, valid until its token's expiry, replaceable by a fresh token.

    ``check`` is what the connection needs of any principal (e.g. ``require_device_credentials``): it raises
    a :class:`FhirError` when a refreshed token lacks it. A socket either calls :meth:`expired` before each
    message it handles or awaits :meth:`until_expired` beside its work, then calls :func:`close_expired`.
    """

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        check: Callable[[Principal], object] | None = None,
    ) -> None:
        self.websocket = websocket
        self.principal = principal
        self._check = check
        self._changed = asyncio.Event()

    def expired(self) -> bool:
        return self.principal.expired()

    async def until_expired(self) -> None:
        """Return once the current token has expired; a refresh moves the deadline (never, without one)."""
        while True:
            self._changed.clear()
            left = self.principal.seconds_left()
            if left is not None and left <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)  # a refresh wakes it early

    async def refresh(self, token: str) -> dict[str, Any]:
        """Take ``token`` as the connection's credentials if it verifies, names the same subject, patient and
        device, and passes ``check``; otherwise keep the current ones. Returns the reply for the client:
        ``{"type": "token", "status": "accepted", "expiresAt"}`` or ``{"type": "token", "status": "error",
        "code", "issue": OperationOutcome}``."""
        verifier: TokenVerifier = self.websocket.app.state.token_verifier
        current = self.principal
        try:
            principal = await run_in_threadpool(verifier.verify, token)
            if (principal.subject, principal.patient, principal.device) != (
                current.subject,
                current.patient,
                current.device,
            ):
                raise Forbidden("A refreshed token must be for the connection's subject, patient and device")
            if self._check is not None:
                self._check(principal)
        except FhirError as exc:
            return {
                "type": "token",
                "status": "error",
                "code": exc.status_code,
                "issue": exc.to_operation_outcome(),
            }
        self.principal = principal
        self._changed.set()
        reply: dict[str, Any] = {"type": "token", "status": "accepted"}
        if principal.expires_at is not None:
            reply["expiresAt"] = principal.expires_at.isoformat().replace("+00:00", "Z")
        return reply
