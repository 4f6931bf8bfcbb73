"""HTTP: the Subscription operations ($status, $events, $resend, $get-ws-binding-token), the topic list and
the websocket binding socket. Reads and writes of Subscription itself are the FHIR store's routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from relearn.shared.auth import Principal, PrincipalDep
from relearn.shared.fhir import FhirResponse
from relearn.shared.service import SessionDep
from relearn.subscriptions.domain.topics import TOPICS
from relearn.subscriptions.schemas import DeliveryOut, TopicOut
from relearn.subscriptions.service import PRINCIPAL, Subscriptions
from relearn.subscriptions.service.websocket import WebsocketChannel


def remember_principal(session: SessionDep, principal: PrincipalDep) -> Principal:
    """Tells the store's write hook who is writing (the Subscription's owner)."""
    session.info[PRINCIPAL] = principal
    return principal


Writer = Annotated[Principal, Depends(remember_principal)]


def operations_router(subs: Subscriptions) -> APIRouter:
    router = APIRouter(
        prefix="/fhir/Subscription", tags=["Subscription"], default_response_class=FhirResponse
    )

    @router.get("/{id}/$status", summary="SubscriptionStatus of one Subscription (Backport IG $status)")
    def status(id: str, session: SessionDep, principal: PrincipalDep) -> FhirResponse:
        return FhirResponse(subs.status(session, principal, id))

    def _events(
        id: str, session: Session, principal: Principal, since: int | None, until: int | None
    ) -> FhirResponse:
        return FhirResponse(subs.events(session, principal, id, since, until))

    @router.get("/{id}/$events", summary="Logged notification events (Backport IG $events)")
    def events(
        id: str,
        session: SessionDep,
        principal: PrincipalDep,
        eventsSinceNumber: Annotated[int | None, Query(ge=1, le=2**31)] = None,
        eventsUntilNumber: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    ) -> FhirResponse:
        return _events(id, session, principal, eventsSinceNumber, eventsUntilNumber)

    @router.post("/{id}/$resend", summary="Deliver again every event from eventsSinceNumber on")
    def resend(
        id: str,
        session: SessionDep,
        principal: PrincipalDep,
        eventsSinceNumber: Annotated[int, Query(ge=1, le=2**31)],
    ) -> FhirResponse:
        return FhirResponse(subs.resend(session, principal, id, eventsSinceNumber))

    @router.post(
        "/{id}/$rotate-secret",
        summary="A new HMAC signing secret, returned once (the Subscription shows the secret masked)",
    )
    def rotate_secret(id: str, session: SessionDep, principal: PrincipalDep) -> FhirResponse:
        # Shown this once: no cache keeps it.
        return FhirResponse(subs.rotate_secret(session, principal, id), headers={"Cache-Control": "no-store"})

    @router.post("/{id}/$get-ws-binding-token", summary="A token to bind a websocket (Backport IG)")
    def ws_token(id: str, session: SessionDep, principal: PrincipalDep) -> FhirResponse:
        return FhirResponse(subs.ws_binding_token(session, principal, id))

    return router


def domain_router(subs: Subscriptions) -> APIRouter:
    router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])

    @router.get("/topics", summary="The subscription topics and their filters")
    def topics(principal: PrincipalDep) -> list[TopicOut]:
        return [
            TopicOut(
                url=t.url,
                title=t.title,
                resource=t.resource,
                eventTypes=list(t.event_types),
                filters=[f.name for f in t.filters],
            )
            for t in TOPICS
        ]

    @router.get(
        "/{id}/delivery", summary="Where delivery of one Subscription stands (pending, failures, errors)"
    )
    def delivery(id: str, session: SessionDep, principal: PrincipalDep) -> DeliveryOut:
        return subs.delivery(session, principal, id)

    return router


def websocket_router(channel_of: Callable[[], WebsocketChannel], poll_s: float) -> APIRouter:
    router = APIRouter()

    @router.websocket("/subscriptions/ws")
    async def bind(ws: WebSocket) -> None:
        """``bind-with-token <token>`` (from $get-ws-binding-token), then notifications and heartbeats."""
        await ws.accept()
        channel = channel_of()
        try:
            first = await asyncio.wait_for(ws.receive_text(), timeout=30)
        except (TimeoutError, WebSocketDisconnect):
            await ws.close(code=4401)
            return
        verb, _, token = first.partition(" ")
        bound = await run_in_threadpool(channel.bind, token.strip()) if verb == "bind-with-token" else None
        if bound is None:
            await ws.send_text('{"error": "unknown or expired binding token"}')
            await ws.close(code=4401)
            return
        binding, handshake = bound
        await ws.send_text(handshake)
        last = time.monotonic()
        try:
            while True:
                message = await run_in_threadpool(channel.next_message, binding, time.monotonic() - last)
                if message is not None:
                    await ws.send_text(message)
                    last = time.monotonic()
                    continue
                if not await run_in_threadpool(channel.alive, binding):
                    await ws.close(code=1000)
                    return
                await asyncio.sleep(poll_s)
        except WebSocketDisconnect:
            return

    return router
