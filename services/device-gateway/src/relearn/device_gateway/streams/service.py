"""Stream bindings' use cases: open one (checked against the Device), list, read, close (staging the
stream-closed event in the same transaction), and whose stream or session it is. Never an HTTP answer:
errors are FhirError subclasses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.device_gateway.authz.service import readable_stream, require_stream_writer, stream_reader_patient
from relearn.device_gateway.device_profile import DeviceKind, DeviceSpec, device_spec
from relearn.device_gateway.device_profile.repository import read_device
from relearn.device_gateway.processing import repository as windows_repository
from relearn.device_gateway.streams import repository
from relearn.device_gateway.streams.domain import check_emg_protocol
from relearn.device_gateway.streams.events import closed_event
from relearn.device_gateway.streams.repository import StreamInfo, aware, gaps_of
from relearn.device_gateway.streams.schemas import (
    GapView,
    StreamIn,
    StreamView,
    WindowMetricView,
    WindowsView,
    WindowView,
)
from relearn.device_gateway.streams.tables import StreamRecord, StreamStatus
from relearn.shared.auth import Principal
from relearn.shared.events import stage
from relearn.shared.fhir import NotFound, UnprocessableEntity
from relearn.shared.service import transaction


def stream_view(session: Session, row: StreamRecord) -> StreamView:
    """The binding as :class:`StreamInfo` snapshots it, with its counters, gaps and timestamps."""
    return StreamView(
        **asdict(StreamInfo.of(row)),
        next_sequence=row.next_sequence,
        frames=row.frames,
        samples=row.samples,
        gaps=[GapView(expected=g.expected, got=g.got, missing=g.missing) for g in gaps_of(session, row.id)],
        created=aware(row.created_at) or row.created_at,
        closed=aware(row.closed_at),
    )


def _active_device(session: Session, device_id: str) -> DeviceSpec:
    """The spec of the Device the binding is for; 422 when it is unknown or not active."""
    device = read_device(session, device_id)
    if device is None:
        raise UnprocessableEntity(f"Device/{device_id} is not known: register it first", expression="device")
    if device.get("status") in ("inactive", "entered-in-error"):
        raise UnprocessableEntity(f"Device/{device_id} is {device['status']}", expression="device")
    return device_spec(device)


def _fits_device(spec: DeviceSpec, body: StreamIn) -> dict[str, Any]:
    """422 unless the binding fits what the Device declares (its kind sends ``streamType``; the ``mvc``
    channels are its channels); returns the protocol, with a load-cell board's spacing filled in."""
    allowed = spec.stream_types
    if allowed is not None and body.stream_type not in allowed:
        sends = " or ".join(sorted(allowed)) if allowed else "no stream itself (it carries sensors)"
        raise UnprocessableEntity(
            f"Device/{body.device} is a {spec.kind} and sends {sends}, not {body.stream_type}",
            expression="streamType",
        )
    if body.mvc and spec.channels:
        unknown = sorted(set(body.mvc) - {c.name for c in spec.channels})
        if unknown:
            raise UnprocessableEntity(
                f"mvc: {', '.join(unknown)} not among the channels of Device/{body.device} "
                f"({', '.join(c.name for c in spec.channels)})",
                expression=[f"mvc.{name}" for name in unknown],
            )
    p = body.protocol
    check_emg_protocol(
        muscles=p.muscles,
        pairs=p.pairs,
        onset_reference=p.onset_reference,
        channels=[c.name for c in spec.channels],
        device=body.device,
    )
    protocol = body.protocol.model_dump(by_alias=True, exclude_none=True)
    spacing = spec.load_cell_spacing_cm
    board = spec.kind in (None, DeviceKind.LOAD_CELL_BOARD)
    if spacing is not None and board and "boardLxCm" not in protocol and "boardLyCm" not in protocol:
        protocol["boardLxCm"], protocol["boardLyCm"] = spacing
    return protocol


def open_stream(session: Session, principal: Principal, body: StreamIn) -> StreamView:
    """A new binding of the body's device stream to its patient (and session)."""
    require_stream_writer(principal)
    protocol = _fits_device(_active_device(session, body.device), body)
    row = StreamRecord(
        id=str(uuid.uuid4()),
        device_id=body.device,
        stream_type=body.stream_type.value,
        patient_id=body.patient,
        session_id=body.session,
        protocol=protocol,
        mvc=dict(body.mvc) if body.mvc is not None else None,
        targets=body.targets.model_dump(by_alias=True, exclude_none=True) if body.targets else None,
    )
    return stream_view(session, repository.add_stream(session, row))


def list_streams(
    session: Session,
    principal: Principal,
    *,
    patient: str | None,
    session_id: str | None,
    device: str | None,
    status: str | None,
    count: int,
) -> list[StreamView]:
    """The bindings the caller may read that match the filters, newest first."""
    own = stream_reader_patient(principal)
    if own is not None:
        if patient not in (None, own):
            return []
        patient = own
    rows = repository.find_streams(
        session, patient=patient, session_id=session_id, device=device, status=status, count=count
    )
    return [stream_view(session, row) for row in rows]


def read_stream(session: Session, principal: Principal, stream_id: str) -> StreamView:
    return stream_view(session, readable_stream(session, principal, stream_id))


def read_windows(
    session: Session, principal: Principal, stream_id: str, *, offset: int, count: int
) -> WindowsView:
    """The stream's window-level metrics (``metrics_window``), ``count`` windows from ``offset``."""
    readable_stream(session, principal, stream_id)
    rows = windows_repository.windows(session, stream_id, offset=offset, count=count)
    return WindowsView(
        stream=stream_id,
        total=windows_repository.count_windows(session, stream_id),
        offset=offset,
        windows=[
            WindowView(
                index=row.window_index,
                start=aware(row.window_start) or row.window_start,
                end=aware(row.window_end) or row.window_end,
                status=row.status,
                reason=row.reason,
                metrics=[
                    WindowMetricView(
                        metric=str(m.get("metric")),
                        channel=m.get("channel"),
                        muscle=m.get("muscle"),
                        value=m.get("value"),
                        unit=str(m.get("unit") or "1"),
                        status=str(m.get("status") or "measured"),
                    )
                    for m in row.metrics or []
                    if isinstance(m, dict)
                ],
            )
            for row in rows
        ],
    )


def close_stream(
    engine: Engine, principal: Principal, stream_id: str, after_close: Callable[[StreamInfo], None]
) -> StreamView:
    """Close a binding (a no-op when closed): the stream-closed event is staged in the same transaction,
    the row locked against ingest; ``after_close`` runs after the commit (the live hub tells its watchers)."""
    require_stream_writer(principal, "u")
    closed = False
    with transaction(engine) as session:
        row = repository.lock_stream(session, stream_id)
        if row is None:
            raise NotFound(f"stream {stream_id} is not known")
        if row.status != StreamStatus.CLOSED:
            row.status = StreamStatus.CLOSED
            row.closed_at = datetime.now(UTC)
            stage(session, closed_event(row))
            repository.save_stream(session, row)
            closed = True
        view = stream_view(session, row)
        info = StreamInfo.of(row)
    if closed:
        after_close(info)
    return view


class PatientLookup:
    """Whose stream (``stream``) or session (``session``) it is: the live biofeedback route's resolver.

    ``bind`` is a start-up step (it gets the engine); then ``lookup(stream, session)`` (exactly one given)
    returns the patient id, or None when no binding is known.
    """

    def __init__(self) -> None:
        self.engine: Engine | None = None

    def bind(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, stream: str | None, session: str | None, /) -> str | None:
        if self.engine is None:
            return None
        with Session(self.engine) as s:
            return repository.patient_of(s, stream=stream, session_id=session)
