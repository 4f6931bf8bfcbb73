"""One ``WS /ingest/ws`` message in, its acks out: the WebSocket's unit of work (run off the event loop by
the route in :mod:`relearn.device_gateway.ingest.routes`)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from relearn.device_gateway.ingest.backpressure import TooBusy
from relearn.device_gateway.ingest.service import Ingestor
from relearn.device_gateway.ingest.wire import check_frame_count, parse_decoded, parse_valid_message
from relearn.shared.auth import Principal
from relearn.shared.fhir import FhirError, InvalidRequest


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
