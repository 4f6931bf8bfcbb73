"""The ingest routes: ``POST /ingest/frames`` and ``WS /ingest/ws`` (device credentials), both handing their
work to the :class:`~relearn.device_gateway.ingest.service.Ingestor` off the event loop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from relearn.device_gateway.authz import require_device_credentials
from relearn.device_gateway.ingest.messages import handle_message
from relearn.device_gateway.ingest.service import Ingestor
from relearn.device_gateway.ingest.wire import INGEST_BODY_SCHEMA, IngestResponse, parse_request
from relearn.shared.auth import (
    PrincipalDep,
    SocketCredentials,
    authenticate_websocket,
    close_expired,
    refuse,
    token_refresh,
)
from relearn.shared.fhir import FhirError

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not JSON"},
    401: {"description": "No or invalid bearer token"},
    403: {"description": "No device credentials, or a frame of a device this token may not send for"},
    409: {"description": "A frame of a closed stream (nothing stored)"},
    413: {"description": "Too many frames, or a frame too large for one event: split it (nothing stored)"},
    422: {
        "description": "OperationOutcome naming each invalid field, e.g. frames[2].samples (nothing stored)"
    },
    429: {
        "description": "Back-pressure: the broker is behind; retry after Retry-After seconds (nothing stored)"
    },
}


def ingest_router(ingestor: Ingestor) -> APIRouter:
    router = APIRouter(prefix="/ingest", tags=["ingest"])

    @router.post(
        "/frames",
        summary="Send sensor frames (device credentials); all stored or none",
        responses=_ERRORS,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{INGEST_BODY_SCHEMA}"}}
                },
            }
        },
    )
    async def ingest_frames(request: Request, principal: PrincipalDep) -> IngestResponse:
        require_device_credentials(principal)
        engine: Engine = request.app.state.engine
        raw = await request.body()

        def work() -> IngestResponse:
            # Off the event loop: parsing a batch and the transaction take milliseconds.
            ingestor.check_backlog(engine)
            frames = parse_request(raw, ingestor.settings.ingest_max_frames)
            return ingestor.ingest(engine, principal, frames).response()

        return await run_in_threadpool(work)

    @router.websocket("/ws")
    async def ingest_ws(websocket: WebSocket) -> None:
        """One SensorFrame (or ``{"frames": [...]}``) per message; one ack per frame."""
        engine: Engine = websocket.app.state.engine
        try:
            principal = await authenticate_websocket(websocket)
            require_device_credentials(principal)
        except FhirError as exc:
            await refuse(websocket, exc)  # close code 4000 + the HTTP status (4401, 4403)
            return
        await websocket.accept()
        credentials = SocketCredentials(websocket, principal, check=require_device_credentials)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                if raw is None:
                    continue
                if credentials.expired():  # checked at each message: nothing arriving after expiry is stored
                    await close_expired(websocket)
                    return
                token = token_refresh(raw)
                if token is not None:
                    await websocket.send_json(await credentials.refresh(token))
                    continue
                acks = await run_in_threadpool(handle_message, ingestor, engine, credentials.principal, raw)
                for ack in acks:
                    await websocket.send_json(ack)
        except WebSocketDisconnect:
            return

    return router
