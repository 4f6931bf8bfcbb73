"""Ingest (``POST /ingest/frames``, ``WS /ingest/ws``): frames in, raw events out, nothing lost or doubled.

A device (or the clinic hub that carries it) sends frames with device credentials (a token with a ``device``
claim, see :mod:`relearn.device_gateway.authz`). A request is all-or-nothing:

1. Back-pressure first: when more than ``ingest_max_backlog`` outbox events wait for the broker, the answer
   is 429 with ``Retry-After`` and nothing is stored (the device keeps its frames and sends them again).
2. Every frame is validated (schema, the stream binding exists, is open, belongs to the frame's device, has
   its stream type and the channel layout fixed by its first frame); any problem is one 422
   OperationOutcome naming each field (``frames[2].samples``) and nothing is stored. A closed stream is 409;
   a frame whose raw event would exceed ``ingest_max_event_bytes`` is 413 (split it).
3. In ONE transaction: the stream rows are locked (``SELECT ... FOR UPDATE``, which serialises the sequence
   bookkeeping of a stream across requests), repeats of a stored (stream, sequence) are reported
   ``duplicate`` and not published again, accepted frames get their row (the recording, compact binary) and
   their raw event in the outbox, and jumps in sequence are recorded as gaps and reported.
4. After the commit, every ``after_commit`` hook runs for each accepted frame (live biofeedback plugs in
   here: ``ingestor.after_commit.append(hub.publish)``).

``WS /ingest/ws`` (token in the ``Authorization`` header or the ``access_token`` query parameter; refusals
close with 4000 + the HTTP status): each text message is one SensorFrame or ``{"frames": [...]}``, answered
with one ack per frame, ``{"streamId", "sequence", "status": "accepted"|"duplicate", "gap"?}``, or
``{"status": "error", "code", "issue": OperationOutcome}`` (nothing of that message stored), or under
back-pressure ``{"status": "retry", "retryAfterMs"}`` for frames that were not stored. The token is checked
again at each message: one arriving after its expiry is not handled and the socket closes with 4401 ``token
expired``. Before that, ``{"type": "token", "accessToken"}`` swaps in a fresh token of the same subject and
device (answered ``{"type": "token", "status": "accepted", "expiresAt"}`` or ``"status": "error"``).

Per-request work is vectorised: samples are parsed by pydantic's core, checked and stored as numpy blocks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, col

from relearn.device_gateway.authz import authorize_devices, require_device_credentials
from relearn.device_gateway.config import Settings
from relearn.device_gateway.device_profile import DeviceSpec, DeviceSpecCache, frame_matches_device
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.stream_store import (
    FrameRecord,
    GapRecord,
    StreamInfo,
    StreamRecord,
    StreamStatus,
    aware,
    frame_record,
    layout_of,
)
from relearn.device_gateway.streams_events import frame_event
from relearn.shared.auth.dependency import PrincipalDep
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.websocket import (
    SocketCredentials,
    authenticate_websocket,
    close_expired,
    refuse,
    token_refresh,
)
from relearn.shared.db import transaction
from relearn.shared.events.outbox import EncodedEvent, OutboxEvent, stage_many
from relearn.shared.fhir.errors import (
    Conflict,
    FhirError,
    InvalidRequest,
    Issue,
    UnprocessableEntity,
    validation_issues,
)

logger = logging.getLogger(__name__)

AfterCommit = Callable[[StreamInfo, SensorFrame], None]
"""Called once per accepted frame after its transaction committed (never for duplicates or refusals).

Runs on the request's worker thread; keep it quick and non-blocking (hand off to a queue). Exceptions are
logged and swallowed: the frames are stored and acknowledged whatever a hook does."""

AfterClose = Callable[[StreamInfo], None]
"""Called once when a stream binding is closed, after the commit (e.g. the live hub forgets the stream)."""


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class IngestRequest(_Wire):
    """A batch of frames, of any streams; stored all together or not at all."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    frames: Annotated[list[SensorFrame], Field(min_length=1)]


class FrameResult(_Wire):
    stream_id: str
    sequence: int
    status: Literal["accepted", "duplicate"]


class GapReport(_Wire):
    stream_id: str
    expected: int = Field(description="The sequence that was expected next")
    got: int = Field(description="The sequence that arrived (frames expected..got-1 are missing so far)")


class IngestResponse(_Wire):
    results: list[FrameResult] = Field(description="One per frame of the request, in its order")
    gaps: list[GapReport] = Field(description="Jumps in sequence detected by this request")


class TooBusy(FhirError):
    """429: the outbox backlog is above the limit; nothing was stored."""

    status_code = 429
    issue_code = "throttled"

    def __init__(self, diagnostics: str, retry_after_s: int) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class TooLarge(FhirError):
    status_code = 413
    issue_code = "too-long"


_UNPUBLISHED = select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))


class BacklogGauge:
    """How many outbox events wait for the broker: one cheap COUNT, reused for ``cache_s`` seconds."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._value = 0
        self._at = float("-inf")

    def current(self, engine: Engine) -> int:
        now = time.monotonic()
        with self._lock:
            if now - self._at <= self.cache_s:
                return self._value
        with engine.connect() as conn:
            value = int(conn.execute(_UNPUBLISHED).scalar_one())
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value

    def add(self, n: int) -> None:
        """Count events just committed until the next COUNT sees them."""
        with self._lock:
            self._value += n


@dataclass
class IngestResult:
    results: list[FrameResult]
    gaps: list[GapReport]
    accepted: list[tuple[StreamInfo, SensorFrame]] = field(default_factory=list)

    def response(self) -> IngestResponse:
        return IngestResponse(results=self.results, gaps=self.gaps)


@dataclass
class _Pending:
    """One stream's state while a request is checked and written."""

    row: StreamRecord
    layout: dict[str, Any] | None
    seen: set[int] = field(default_factory=set)


_FRAME_TABLE: Table = FrameRecord.__table__  # type: ignore[attr-defined]
_STREAM_TABLE: Table = StreamRecord.__table__  # type: ignore[attr-defined]
# Built once (statement construction costs more than running them): lock a request's stream rows in id
# order, and write back their bookkeeping.
_LOCK_STREAMS = (
    select(StreamRecord)
    .where(col(StreamRecord.id).in_(bindparam("ids", expanding=True)))
    .order_by(col(StreamRecord.id))
    .with_for_update()
)
_UPDATE_STREAM = update(_STREAM_TABLE).where(_STREAM_TABLE.c.id == bindparam("b_id"))

_LAYOUT_FIELDS = (("samplingRateHz", "samplingRateHz"), ("channels", "channels"), ("adc", "adc"))


class Ingestor:
    """Validates and stores frames; one per app (``app.state.ingestor``)."""

    def __init__(self, settings: Settings, device_specs: DeviceSpecCache | None = None) -> None:
        self.settings = settings
        # What each Device declares (kind, rate, channels); the first frame of a stream must fit it.
        self.device_specs = device_specs or DeviceSpecCache()
        self.after_commit: list[AfterCommit] = []
        self.after_close: list[AfterClose] = []
        self.backlog = BacklogGauge(settings.ingest_backlog_cache_s)

    # -- parsing ---------------------------------------------------------------------------------------
    def parse(self, raw: bytes | str) -> list[SensorFrame]:
        """``{"frames": [...]}`` -> frames (parsed in pydantic's core); else a 400/413/422 outcome."""
        try:
            frames = IngestRequest.model_validate_json(raw).frames
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return self._not_too_many(frames)

    def parse_obj(self, body: Any, *, allow_single: bool = False) -> list[SensorFrame]:
        """Already-decoded JSON (the WebSocket's); with ``allow_single`` a bare frame is a batch of one."""
        if allow_single and isinstance(body, dict) and "frames" not in body:
            body = {"frames": [body]}
        try:
            frames = IngestRequest.model_validate(body).frames
        except ValidationError as exc:
            raise self._invalid(exc) from None
        return self._not_too_many(frames)

    @staticmethod
    def _parse_valid(raw: str | bytes) -> list[SensorFrame] | None:
        """The fast path for a valid WebSocket message: validated straight from its JSON in pydantic's core
        (one frame, or a ``{"frames": [...]}`` batch of at most the allowed size); None for anything else,
        which `handle_message` then parses as before to report it."""
        batch = ('"frames"' in raw) if isinstance(raw, str) else (b'"frames"' in raw)
        try:
            if batch:
                return IngestRequest.model_validate_json(raw).frames
            return [SensorFrame.model_validate_json(raw)]
        except ValidationError:
            return None

    @staticmethod
    def _invalid(exc: ValidationError) -> FhirError:
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return InvalidRequest(f"The body is not JSON: {errors[0]['msg']}")
        issues = validation_issues(errors)
        return UnprocessableEntity(
            "Invalid frames: nothing was stored", issues=issues or None, expression="frames"
        )

    def _not_too_many(self, frames: list[SensorFrame]) -> list[SensorFrame]:
        if len(frames) > self.settings.ingest_max_frames:
            raise TooLarge(
                f"{len(frames)} frames in one request; send at most {self.settings.ingest_max_frames}",
                expression="frames",
            )
        return frames

    # -- back-pressure ---------------------------------------------------------------------------------
    def check_backlog(self, engine: Engine) -> None:
        backlog = self.backlog.current(engine)
        if backlog > self.settings.ingest_max_backlog:
            raise TooBusy(
                f"{backlog} events wait for the broker (limit {self.settings.ingest_max_backlog}); "
                f"nothing was stored: send again in {self.settings.ingest_retry_after_s} s",
                self.settings.ingest_retry_after_s,
            )

    # -- storing ---------------------------------------------------------------------------------------
    def ingest(self, engine: Engine, principal: Principal, frames: Sequence[SensorFrame]) -> IngestResult:
        """Store a validated batch in one transaction and run the after-commit hooks; see the module doc."""
        require_device_credentials(principal)
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                with transaction(engine) as session:
                    result = self._write(session, principal, frames)
                break
            except (IntegrityError, OperationalError) as exc:
                # A concurrent request stored one of these frames first (or a deadlock/serialisation
                # failure): nothing of ours was kept, so do it again and see its rows as duplicates.
                if isinstance(exc, OperationalError) and not _contended(exc):
                    raise  # the database is down or broken: not ours to retry
                if attempt == attempts:
                    raise Conflict("Concurrent writes to the same streams; send the frames again") from exc
                logger.info("ingest retried after a concurrent write", extra={"error": type(exc).__name__})
        events = sum(1 for r in result.results if r.status == "accepted")
        self.backlog.add(events)
        for info, frame in result.accepted:
            for hook in self.after_commit:
                try:
                    hook(info, frame)
                except Exception:
                    logger.exception("after-commit hook failed", extra={"stream": info.id})
        return result

    def _write(self, session: Session, principal: Principal, frames: Sequence[SensorFrame]) -> IngestResult:
        authorize_devices(session, principal, (f.device_id for f in frames))
        streams = self._lock_streams(session, sorted({f.stream_id for f in frames}))
        stored = self._stored_sequences(session, frames, streams)
        specs = {d: self.device_specs.get(session, d) for d in {f.device_id for f in frames}}
        self._check(frames, streams, stored, specs)

        results: list[FrameResult] = []
        gaps: list[GapReport] = []
        accepted: list[SensorFrame] = []
        rows: list[dict[str, Any]] = []
        events: list[EncodedEvent] = []
        limit = self.settings.ingest_max_event_bytes
        for i, frame in enumerate(frames):
            pending = streams[frame.stream_id]
            row = pending.row
            key = frame.sequence
            if key in pending.seen or (frame.stream_id, key) in stored:
                results.append(FrameResult(stream_id=frame.stream_id, sequence=key, status="duplicate"))
                continue
            pending.seen.add(key)
            if row.origin is None:
                row.origin = frame.start_time
                row.layout = layout_of(frame)
            if key > row.next_sequence:
                gaps.append(GapReport(stream_id=row.id, expected=row.next_sequence, got=key))
                session.add(GapRecord(stream_id=row.id, expected=row.next_sequence, got=key))
                row.gap_count += 1
            if key >= row.next_sequence:
                row.next_sequence = key + 1
                origin = aware(row.origin)
                assert origin is not None
                row.last_time_offset = (frame.start_time - origin).total_seconds() + frame.end_time_offset
            row.frames += 1
            row.samples += frame.n_samples
            event = frame_event(row, frame)
            size = len(event.payload)
            if size > limit:
                raise TooLarge(
                    f"frames[{i}] makes a {size}-byte event (limit {limit}): split it into smaller frames; "
                    "nothing was stored",
                    expression=f"frames[{i}]",
                )
            events.append(event)
            rows.append(frame_record(frame))
            results.append(FrameResult(stream_id=frame.stream_id, sequence=key, status="accepted"))
            accepted.append(frame)
        if rows:
            # Frames and their events are 20-60 kB values that PostgreSQL TOASTs: their columns compress
            # with lz4 where the server has it (migration 5b1e0c7d9a42), at a fifth of pglz's cost.
            # Core multi-row INSERTs (executemany in one pipeline), no ORM objects for frames or events.
            session.execute(insert(_FRAME_TABLE), rows)
            stage_many(session, events)
        changed = [p.row for p in streams.values() if p.seen]
        if changed:
            # The rows were detached when locked: one Core UPDATE for all, no unit-of-work bookkeeping.
            session.execute(
                _UPDATE_STREAM,
                [
                    {
                        "b_id": r.id,
                        "next_sequence": r.next_sequence,
                        "frames": r.frames,
                        "samples": r.samples,
                        "gap_count": r.gap_count,
                        "layout": r.layout,
                        "origin": r.origin,
                        "last_time_offset": r.last_time_offset,
                    }
                    for r in changed
                ],
            )
        session.flush()  # the gap rows
        # Hooks see each stream as this request left it.
        snapshots = {sid: StreamInfo.of(p.row) for sid, p in streams.items()}
        return IngestResult(results, gaps, [(snapshots[f.stream_id], f) for f in accepted])

    def _lock_streams(self, session: Session, ids: list[str]) -> dict[str, _Pending]:
        rows = list(session.execute(_LOCK_STREAMS, {"ids": ids}).scalars())
        for row in rows:
            # Changes are written by one UPDATE at the end (`_write`), not tracked by the session.
            session.expunge(row)
        return {row.id: _Pending(row, dict(row.layout) if row.layout is not None else None) for row in rows}

    def _check(
        self,
        frames: Sequence[SensorFrame],
        streams: dict[str, _Pending],
        stored: set[tuple[str, int]],
        specs: Mapping[str, DeviceSpec | None],
    ) -> None:
        """Every problem of every frame, as one 422 (or 409 when the only problem is closed streams).

        A frame the stream already has is a duplicate even once the stream is closed (a device resending
        after lost acks learns they are safe)."""
        issues: list[Issue] = []
        closed: list[Issue] = []
        for i, frame in enumerate(frames):
            where = f"frames[{i}]"
            pending = streams.get(frame.stream_id)
            if pending is None:
                issues.append(
                    _issue(f"{where}.streamId", f"stream {frame.stream_id} is not known: open it first")
                )
                continue
            row = pending.row
            if row.device_id != frame.device_id:
                issues.append(
                    _issue(
                        f"{where}.deviceId",
                        f"stream {row.id} is bound to Device/{row.device_id}, not Device/{frame.device_id}",
                    )
                )
            if row.stream_type != frame.stream_type.value:
                issues.append(
                    _issue(
                        f"{where}.streamType",
                        f"stream {row.id} is a {row.stream_type} stream, not {frame.stream_type.value}",
                    )
                )
                continue
            if row.status != StreamStatus.OPEN and (frame.stream_id, frame.sequence) not in stored:
                closed.append(
                    Issue(
                        "conflict",
                        f"{where}.streamId: stream {row.id} is closed",
                        "error",
                        [f"{where}.streamId"],
                    )
                )
                continue
            layout = layout_of(frame)
            if pending.layout is None:
                # The stream's first frame fixes its layout, so checking it against the Device covers all.
                spec = specs.get(frame.device_id)
                if spec is not None:
                    issues.extend(frame_matches_device(spec, frame, where))
                pending.layout = layout
                continue
            for key, wire in _LAYOUT_FIELDS:
                if pending.layout.get(key) != layout[key]:
                    issues.append(
                        _issue(
                            f"{where}.{wire}",
                            f"{wire} {json.dumps(layout[key])} differs from the stream's "
                            f"{json.dumps(pending.layout.get(key))} (fixed by its first frame): open a new "
                            "stream for a new layout",
                        )
                    )
        if issues:
            raise UnprocessableEntity("Invalid frames: nothing was stored", issues=issues + closed)
        if closed:
            raise Conflict("Frames for a closed stream: nothing was stored", issues=closed)

    @staticmethod
    def _stored_sequences(
        session: Session, frames: Sequence[SensorFrame], streams: dict[str, _Pending]
    ) -> set[tuple[str, int]]:
        """The (stream, sequence) of these frames already stored. Only sequences below the locked stream's
        ``next_sequence`` can be (it is one past the highest stored), so a live stream's new frames cost no
        query."""
        wanted: dict[str, set[int]] = {}
        for frame in frames:
            pending = streams.get(frame.stream_id)
            if pending is not None and frame.sequence < pending.row.next_sequence:
                wanted.setdefault(frame.stream_id, set()).add(frame.sequence)
        stored: set[tuple[str, int]] = set()
        for stream_id, sequences in wanted.items():
            found = session.execute(
                select(col(FrameRecord.sequence)).where(
                    col(FrameRecord.stream_id) == stream_id, col(FrameRecord.sequence).in_(sorted(sequences))
                )
            ).scalars()
            stored.update((stream_id, int(s)) for s in found)
        return stored

    def closed(self, info: StreamInfo) -> None:
        """Run the after-close hooks (the close endpoint calls this after its commit)."""
        for hook in self.after_close:
            try:
                hook(info)
            except Exception:
                logger.exception("after-close hook failed", extra={"stream": info.id})

    # -- the WebSocket's unit of work ------------------------------------------------------------------
    def handle_message(self, engine: Engine, principal: Principal, raw: str | bytes) -> list[dict[str, Any]]:
        """A WebSocket message (a frame or ``{"frames": [...]}``) -> its acks, one per frame if readable."""
        frames = self._parse_valid(raw)
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
            self.check_backlog(engine)
            batch = self.parse_obj(body, allow_single=True) if frames is None else self._not_too_many(frames)
            result = self.ingest(engine, principal, batch)
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


def _contended(exc: OperationalError) -> bool:
    """A deadlock or serialisation failure (PostgreSQL), or a busy database (SQLite): worth a retry."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40001", "40P01") or "database is locked" in str(exc.orig)


def _issue(path: str, message: str) -> Issue:
    return Issue("invalid", f"{path}: {message}", "error", [path])


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


# -- HTTP and WebSocket -----------------------------------------------------------------------------------
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

INGEST_BODY_SCHEMA = "IngestRequest"


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
            frames = ingestor.parse(raw)
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
                acks = await run_in_threadpool(ingestor.handle_message, engine, credentials.principal, raw)
                for ack in acks:
                    await websocket.send_json(ack)
        except WebSocketDisconnect:
            return

    return router


def openapi_schemas() -> dict[str, Any]:
    """Component schemas of the ingest request body (its route reads the raw body to stay off the loop)."""
    schema = IngestRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, INGEST_BODY_SCHEMA: schema}
