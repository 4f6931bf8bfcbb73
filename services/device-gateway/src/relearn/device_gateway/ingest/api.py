"""The ingest routes: ``POST /ingest/frames`` and ``WS /ingest/ws`` (device credentials), both handing their
work to the :class:`~relearn.device_gateway.ingest.service.Ingestor` off the event loop."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Engine

from relearn.device_gateway.authz.service import require_device_credentials
from relearn.device_gateway.ingest.schemas import (
    INGEST_BODY_SCHEMA,
    IngestResponse,
    check_frame_count,
    parse_decoded,
    parse_request,
    parse_valid_message,
)
from relearn.device_gateway.ingest.service import Ingestor, TooBusy
from relearn.shared.auth import (
    Principal,
    PrincipalDep,
    SocketCredentials,
    authenticate_websocket,
    close_expired,
    refuse,
    token_refresh,
)
from relearn.shared.fhir import FhirError, InvalidRequest

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


def handle_message(
    ingestor: Ingestor, engine: Engine, principal: Principal, raw: str | bytes
) -> list[dict[str, Any]]:
    """A WebSocket message (a frame or ``{"frames": [...]}``) -> its acks, one per frame if readable."""
    max_frames = ingestor.settings.ingest_max_frames
    frames = parse_valid_message(raw)
    body: Any = None
    if frames is not None:
        refs: list[dict[str, Any]] = [{"streamId": f.stream_id, "sequence": f.sequence} for f in frames]
    else:
        # Not a valid message: parse it the slow way, for the acks' references and the error's paths.
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return [_error_ack(InvalidRequest("The message is not JSON"))]
        refs = _frame_refs(body)
    try:
        ingestor.check_backlog(engine)
        batch = (
            parse_decoded(body, max_frames, allow_single=True)
            if frames is None
            else check_frame_count(frames, max_frames)
        )
        result = ingestor.ingest(engine, principal, batch)
    except TooBusy as exc:
        retry = {"status": "retry", "retryAfterMs": exc.retry_after_s * 1000}
        return [{**ref, **retry} for ref in refs] or [retry]
    except FhirError as exc:
        return [{**ref, **_error_ack(exc)} for ref in refs] or [_error_ack(exc)]
    gap_of = {(g.stream_id, g.got): g for g in result.gaps}
    acks = []
    for r in result.results:
        ack: dict[str, Any] = r.model_dump(by_alias=True)
        gap = gap_of.get((r.stream_id, r.sequence))
        if gap is not None and r.status == "accepted":
            ack["gap"] = {"expected": gap.expected, "got": gap.got}
        acks.append(ack)
    return acks


def _error_ack(exc: FhirError) -> dict[str, Any]:
    return {"status": "error", "code": exc.status_code, "issue": exc.to_operation_outcome()}


def _frame_refs(body: Any) -> list[dict[str, Any]]:
    """``streamId``/``sequence`` of each frame in a message, as far as they can be read (for the acks)."""
    items = body.get("frames") if isinstance(body, dict) and "frames" in body else [body]
    if not isinstance(items, list):
        return []
    refs = []
    for item in items:
        ref: dict[str, Any] = {}
        if isinstance(item, dict):
            if isinstance(item.get("streamId"), str):
                ref["streamId"] = item["streamId"]
            if isinstance(item.get("sequence"), int):
                ref["sequence"] = item["sequence"]
        refs.append(ref)
    return refs
