"""`WS /biofeedback/ws`: live biofeedback for one stream (`?stream=<id>`) or one session (`?session=<Encounter
id>`), computed by this gateway process from the frames it ingests (see `live.service` for the messages).

Token: `Authorization: Bearer` header or `access_token` query parameter, needing `Observation.read`: a
`patient/` token only for its own patient's stream or session, `user/` and `system/` tokens for any.
Refusals close the socket after the handshake with code 4000 + the HTTP status (4401 missing/invalid
token, 4403 not allowed, 4404 unknown stream or session, 4400 bad query, 4503 the binding lookup failed)
and a reason.

First message: `{"type": "subscribed", "stream"|"session", "patient", "displayRateHz"}`; then the hub's
`emg`/`cop` messages, `{"type": "closed", ...}` when a stream closes, and `{"type": "lagging", "dropped": n}`
before the next message when this client was too slow and lost `n` messages.

The socket closes with 4401 and the reason `token expired` when the token's expiry (`exp`) passes. Before that
the client may send `{"type": "token", "accessToken": "..."}`: a fresh token of the same subject and patient
that may still watch this stream or session replaces the old one (reply `{"type": "token", "status":
"accepted", "expiresAt"}`; otherwise `"status": "error"` with `code` and an OperationOutcome `issue`, and the
old token stays). Other messages from the client are ignored (a client may send pings).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable
from typing import Protocol

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from relearn.device_gateway.live.service import LiveHub, Subscription
from relearn.shared.auth import (
    Principal,
    SocketCredentials,
    authenticate_websocket,
    close_expired,
    refuse,
    token_refresh,
)
from relearn.shared.fhir import FhirError, Forbidden, InvalidRequest, NotFound

logger = logging.getLogger(__name__)


class PatientResolver(Protocol):
    """The patient a stream binding (or a session's bindings) belongs to; None when unknown.

    Called with exactly one of `stream` / `session` set. May be a plain function (run in the thread pool,
    e.g. a database lookup) or a coroutine function.
    """

    def __call__(self, stream: str | None, session: str | None, /) -> str | Awaitable[str | None] | None: ...


def biofeedback_router(hub: LiveHub, resolve: PatientResolver) -> APIRouter:
    router = APIRouter(tags=["biofeedback"])

    async def _patient_of(stream: str | None, session: str | None) -> str | None:
        result: str | Awaitable[str | None] | None
        if inspect.iscoroutinefunction(resolve):
            result = resolve(stream, session)
        else:
            result = await run_in_threadpool(resolve, stream, session)  # e.g. a database lookup
        if inspect.isawaitable(result):
            result = await result
        return result if isinstance(result, str) else None

    async def _authorise(
        websocket: WebSocket, stream: str | None, session: str | None
    ) -> tuple[Principal, str | None, str]:
        """(principal, patient filter for the subscription, the resolved patient) or raises a FhirError."""
        principal: Principal = await authenticate_websocket(websocket)
        if (stream is None) == (session is None):
            raise InvalidRequest(
                "Give exactly one of the query parameters stream or session", expression="stream"
            )
        principal.require("Observation", "s")
        patient = await _patient_of(stream, session)
        what = f"stream {stream}" if stream is not None else f"session {session}"
        if patient is None:
            raise NotFound(f"No open or known {what}")
        return principal, _may_watch(principal, patient, what), patient

    @router.websocket("/biofeedback/ws")
    async def biofeedback(
        websocket: WebSocket, stream: str | None = None, session: str | None = None
    ) -> None:
        try:
            principal, restriction, patient = await _authorise(websocket, stream, session)
        except FhirError as error:
            await refuse(websocket, error)
            return
        except Exception:  # the binding lookup failed (database down): say so, not a bare 1011 crash
            logger.exception("biofeedback: could not resolve the stream's patient")
            await refuse(
                websocket, FhirError("Could not check the stream binding; try again", status_code=503)
            )
            return
        await websocket.accept()
        what = f"stream {stream}" if stream is not None else f"session {session}"
        credentials = SocketCredentials(
            websocket, principal, check=lambda fresh: _may_watch(fresh, patient, what)
        )
        with hub.subscribe(stream=stream, session=session, patient=restriction) as sub:
            hello = {
                "type": "subscribed",
                "stream": stream,
                "session": session,
                "patient": patient,
                "displayRateHz": hub.display_rate_hz,
            }
            await websocket.send_text(json.dumps({k: v for k, v in hello.items() if v is not None}))
            await _pump(websocket, sub, credentials)

    return router


def _may_watch(principal: Principal, patient: str, what: str) -> str | None:
    """The patient filter for `principal` watching `what` (of `patient`), or raises 403. Watching a
    stream is a standing search of its Observations: the ``s`` letter (v1 ``read``)."""
    principal.require("Observation", "s")
    restriction = principal.patient_restriction("Observation", "s")
    if restriction is not None and restriction != patient:
        # Same answer shape as other patient-compartment refusals, without saying whose it is.
        raise Forbidden(f"This token may only watch streams of patient {restriction}, not {what}")
    return restriction


async def _pump(websocket: WebSocket, sub: Subscription, credentials: SocketCredentials) -> None:
    """Send queued messages until the client goes away (noticed by a concurrent receive) or the token
    expires (a timer beside them, moved by token refreshes; then the socket closes with 4401)."""
    sending = asyncio.Lock()  # the sender and the refresh replies take turns

    async def send() -> None:
        reported = 0
        while True:
            text = await sub.get()
            async with sending:
                if sub.dropped > reported:
                    lag = {"type": "lagging", "dropped": sub.dropped - reported}
                    await websocket.send_text(json.dumps(lag))
                    reported = sub.dropped
                await websocket.send_text(text)

    async def receive() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") if message.get("text") is not None else message.get("bytes")
            token = token_refresh(raw) if raw is not None else None
            if token is not None:
                reply = await credentials.refresh(token)
                async with sending:
                    await websocket.send_text(json.dumps(reply))

    sender = asyncio.create_task(send())
    receiver = asyncio.create_task(receive())
    expiry = asyncio.create_task(credentials.until_expired())
    tasks = (sender, receiver, expiry)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
    if expiry.done() and not expiry.cancelled() and expiry.exception() is None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):  # the client may be gone
            await close_expired(websocket)
