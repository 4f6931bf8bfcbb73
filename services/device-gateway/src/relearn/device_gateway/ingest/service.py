"""The Ingestor: checks a batch of frames and stores it in ONE transaction (frame rows, raw events in the
outbox, sequence bookkeeping and gaps), then runs the after-commit hooks.

The steps and their answers are described in :mod:`relearn.device_gateway.ingest`."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from relearn.device_gateway.authz.service import authorize_devices, require_device_credentials
from relearn.device_gateway.config import Settings
from relearn.device_gateway.device_profile import DeviceSpec, DeviceSpecCache, frame_matches_device
from relearn.device_gateway.ingest.repository import count_unpublished
from relearn.device_gateway.ingest.schemas import FrameResult, GapReport, IngestResponse, TooLarge
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.streams import repository
from relearn.device_gateway.streams.events import frame_event
from relearn.device_gateway.streams.repository import StreamInfo, aware, frame_record, layout_of
from relearn.device_gateway.streams.tables import StreamRecord, StreamStatus
from relearn.shared.auth import Principal
from relearn.shared.events import EncodedEvent, stage_many
from relearn.shared.fhir import Conflict, FhirError, Issue, UnprocessableEntity
from relearn.shared.service import audit_in, touch_patients, transaction

logger = logging.getLogger(__name__)

AfterCommit = Callable[[StreamInfo, SensorFrame], None]
"""Called once per accepted frame after its transaction committed (never for duplicates or refusals).

Runs on the request's worker thread; keep it quick and non-blocking (hand off to a queue). Exceptions are
logged and swallowed: the frames are stored and acknowledged whatever a hook does."""

AfterClose = Callable[[StreamInfo], None]
"""Called once when a stream binding is closed, after the commit (e.g. the live hub forgets the stream)."""


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


class TooBusy(FhirError):
    """429: the outbox backlog is above the limit; nothing was stored."""

    status_code = 429
    issue_code = "throttled"

    def __init__(self, diagnostics: str, retry_after_s: int) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


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
        value = count_unpublished(engine)
        with self._lock:
            self._value, self._at = value, time.monotonic()
        return value

    def add(self, n: int) -> None:
        """Count events just committed until the next COUNT sees them."""
        with self._lock:
            self._value += n

    def check(self, engine: Engine, limit: int, retry_after_s: int) -> None:
        """:class:`TooBusy` when more than ``limit`` events wait for the broker."""
        backlog = self.current(engine)
        if backlog > limit:
            raise TooBusy(
                f"{backlog} events wait for the broker (limit {limit}); "
                f"nothing was stored: send again in {retry_after_s} s",
                retry_after_s,
            )


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

    # -- back-pressure ---------------------------------------------------------------------------------
    def check_backlog(self, engine: Engine) -> None:
        """429 :class:`TooBusy` when more than ``ingest_max_backlog`` events wait for the broker."""
        self.backlog.check(engine, self.settings.ingest_max_backlog, self.settings.ingest_retry_after_s)

    # -- storing ---------------------------------------------------------------------------------------
    def ingest(self, engine: Engine, principal: Principal, frames: Sequence[SensorFrame]) -> IngestResult:
        """Store a validated batch in one transaction and run the after-commit hooks; see the package doc."""
        require_device_credentials(principal)
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                with transaction(engine) as session:
                    result = self._write(session, principal, frames)
                    audit_in(session)  # the AuditEvent commits with the frames: no extra transaction
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
        touch_patients(*(p.row.patient_id for p in streams.values()))  # whose frames: for the audit trail
        stored = self._stored_sequences(session, frames, streams)
        specs = {d: self.device_specs.get(session, d) for d in {f.device_id for f in frames}}
        self._check(frames, streams, stored, specs)

        results: list[FrameResult] = []
        gaps: list[GapReport] = []
        new_gaps: list[tuple[str, int, int]] = []
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
                new_gaps.append((row.id, row.next_sequence, key))
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
            repository.insert_frames(session, rows)
            stage_many(session, events)
        changed = [p.row for p in streams.values() if p.seen]
        if changed:
            repository.write_counters(session, changed)
        repository.add_gaps(session, new_gaps)
        # Hooks see each stream as this request left it.
        snapshots = {sid: StreamInfo.of(p.row) for sid, p in streams.items()}
        return IngestResult(results, gaps, [(snapshots[f.stream_id], f) for f in accepted])

    def _lock_streams(self, session: Session, ids: list[str]) -> dict[str, _Pending]:
        rows = repository.lock_streams(session, ids)
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
            stored.update((stream_id, s) for s in repository.stored_sequences(session, stream_id, sequences))
        return stored

    def closed(self, info: StreamInfo) -> None:
        """Run the after-close hooks (the close endpoint calls this after its commit)."""
        for hook in self.after_close:
            try:
                hook(info)
            except Exception:
                logger.exception("after-close hook failed", extra={"stream": info.id})


def _contended(exc: OperationalError) -> bool:
    """A deadlock or serialisation failure (PostgreSQL), or a busy database (SQLite): worth a retry."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40001", "40P01") or "database is locked" in str(exc.orig)


def _issue(path: str, message: str) -> Issue:
    return Issue("invalid", f"{path}: {message}", "error", [path])
