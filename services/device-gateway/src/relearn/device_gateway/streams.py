"""Stream bindings (``/streams``): whose recording a device's stream is (patient, session), and how made.

A clinician's app or an EHR opens a binding before a recording (``POST /streams``), the device sends frames
naming its ``streamId`` (``/ingest``), and the binding is closed at the end of the recording
(``POST /streams/{id}/close``), which stages ``device.<emg|balance>-stream-closed.v1`` in the same
transaction so the processor computes the whole-recording metrics. ``GET /streams/{id}`` shows the counters,
the gaps in sequence and the stream's origin (the first frame's start time).

Writes need ``user/`` or ``system/`` ``Observation.write``; reads ``Observation.read`` (a ``patient/`` token
sees only its own patient's streams; a device token the streams of the devices it may push for).
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from relearn.device_gateway.authz import (
    read_device,
    readable_stream,
    require_stream_writer,
    stream_reader_patient,
)
from relearn.device_gateway.device_profile import DeviceKind, DeviceSpec, device_spec
from relearn.device_gateway.ingest import Ingestor
from relearn.device_gateway.signals.frames import StreamType
from relearn.device_gateway.stream_protocol import Muscles, Pairs, check_emg_protocol
from relearn.device_gateway.stream_store import StreamInfo, StreamRecord, StreamStatus, aware, gaps_of
from relearn.device_gateway.streams_events import closed_event
from relearn.shared.auth import PrincipalDep
from relearn.shared.events import stage
from relearn.shared.fhir import NotFound, UnprocessableEntity
from relearn.shared.service import EngineDep, SessionDep, transaction

_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"

StreamId = Annotated[str, Path(description="The stream binding id", max_length=64)]

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "OperationOutcome naming each invalid field"},
    401: {"description": "No or invalid bearer token"},
    403: {"description": "Scopes do not allow it (writes need user/ or system/ Observation.write)"},
    404: {"description": "No such stream (or not this patient's)"},
    422: {
        "description": "The Device is unknown or not active, or declares another kind (streamType), other "
        "channels (mvc, protocol.muscles / pairs / onsetReference); an unknown muscle (protocol.muscles.<ch>)"
    },
}


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _reference_id(prefix: str) -> Any:
    """Accept ``id`` or ``<Type>/id``; keep the id."""

    def strip(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(prefix + "/"):
            return value.removeprefix(prefix + "/")
        return value

    return strip


class Protocol(_Wire):
    """How the recording is made: what the processor needs to label and compare trials."""

    vision: Literal["open", "closed"] | None = Field(default=None, description="Eyes open or closed")
    surface: Literal["firm", "foam"] | None = Field(default=None, description="Standing surface")
    task: str | None = Field(
        default=None, max_length=200, description="e.g. 'quiet-standing', 'knee-extension'"
    )
    cue_time: float | None = Field(
        default=None, ge=0, description="Seconds from the stream's origin at which the go cue was given"
    )
    onset_reference: str | None = Field(
        default=None,
        max_length=64,
        description="EMG: the synergist channel onset latencies are timed against (e.g. vastus-lateralis "
        "for VMO timing); without it they are timed from cueTime; with neither there is no latency",
    )
    muscles: Muscles | None = None
    pairs: Pairs | None = None
    board_lx_cm: float | None = Field(
        default=None, gt=0, le=500, description="Load-cell board: distance between left and right cells (cm)"
    )
    board_ly_cm: float | None = Field(
        default=None, gt=0, le=500, description="Load-cell board: distance between front and back cells (cm)"
    )


class Targets(_Wire):
    """Biofeedback targets shown live to the patient."""

    emg_percent_mvc_min: float | None = Field(default=None, ge=0, le=1000, description="Lowest %MVC to reach")
    sway_radius_max_cm: float | None = Field(
        default=None, gt=0, le=100, description="Largest COP radius (cm)"
    )


class StreamIn(_Wire):
    """Open a binding of a device's stream to a patient (and a session)."""

    device: Annotated[str, Field(pattern=_FHIR_ID, description="Device id (or Device/<id>)")]
    stream_type: StreamType
    patient: Annotated[str, Field(pattern=_FHIR_ID, description="Patient id (or Patient/<id>)")]
    session: Annotated[
        str | None, Field(default=None, pattern=_FHIR_ID, description="Encounter id of the session, if any")
    ] = None
    protocol: Protocol = Field(default_factory=Protocol)
    mvc: dict[Annotated[str, Field(min_length=1, max_length=64)], PositiveFloat] | None = Field(
        default=None,
        description="Maximal voluntary contraction envelope per EMG channel (channel units), for %MVC",
    )
    targets: Targets | None = None

    _device = field_validator("device", mode="before")(_reference_id("Device"))
    _patient = field_validator("patient", mode="before")(_reference_id("Patient"))
    _session = field_validator("session", mode="before")(_reference_id("Encounter"))


class GapView(_Wire):
    expected: int = Field(description="The sequence that was expected")
    got: int = Field(description="The sequence that arrived instead")
    missing: int = Field(description="How many of expected..got-1 are still missing (late frames fill gaps)")


class StreamView(_Wire):
    id: str
    device: str
    stream_type: StreamType
    patient: str
    session: str | None
    protocol: dict[str, Any]
    mvc: dict[str, float] | None
    targets: dict[str, Any] | None
    status: Literal["open", "closed"]
    next_sequence: int = Field(description="One past the highest sequence accepted (the next one expected)")
    frames: int = Field(description="Frames accepted")
    samples: int = Field(description="Samples accepted")
    gaps: list[GapView]
    origin: datetime | None = Field(description="The first accepted frame's startTime (window alignment)")
    layout: dict[str, Any] | None = Field(
        description="samplingRateHz, channels and adc fixed by the first frame (null before it)"
    )
    created: datetime
    closed: datetime | None


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


def streams_router(ingestor: Ingestor) -> APIRouter:
    router = APIRouter(prefix="/streams", tags=["streams"], responses=_ERRORS)

    @router.post("", status_code=201, summary="Open a stream binding (device stream -> patient, session)")
    def create_stream(body: StreamIn, principal: PrincipalDep, session: SessionDep) -> StreamView:
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
        session.add(row)
        session.flush()
        return stream_view(session, row)

    @router.get("", summary="List stream bindings (newest first)")
    def list_streams(
        principal: PrincipalDep,
        session: SessionDep,
        patient: Annotated[str | None, Query(max_length=64, description="Patient id")] = None,
        session_id: Annotated[
            str | None, Query(alias="session", max_length=64, description="Encounter id of the session")
        ] = None,
        device: Annotated[str | None, Query(max_length=64, description="Device id")] = None,
        status: Annotated[Literal["open", "closed"] | None, Query()] = None,
        count: Annotated[int, Query(alias="_count", ge=1, le=500, description="At most this many")] = 100,
    ) -> list[StreamView]:
        own = stream_reader_patient(principal)
        if own is not None:
            if patient not in (None, own):
                return []
            patient = own
        query = select(StreamRecord)
        if patient is not None:
            query = query.where(col(StreamRecord.patient_id) == patient)
        if session_id is not None:
            query = query.where(col(StreamRecord.session_id) == session_id)
        if device is not None:
            query = query.where(col(StreamRecord.device_id) == device)
        if status is not None:
            query = query.where(col(StreamRecord.status) == status)
        query = query.order_by(col(StreamRecord.created_at).desc(), col(StreamRecord.id)).limit(count)
        return [stream_view(session, row) for row in session.execute(query).scalars()]

    @router.get("/{stream_id}", summary="A stream binding with its counters, gaps and origin")
    def get_stream(stream_id: StreamId, principal: PrincipalDep, session: SessionDep) -> StreamView:
        return stream_view(session, readable_stream(session, principal, stream_id))

    @router.post(
        "/{stream_id}/close",
        summary="Close a stream (stream-closed event -> whole-recording metrics); closing again is a no-op",
    )
    def close_stream(stream_id: StreamId, principal: PrincipalDep, engine: EngineDep) -> StreamView:
        require_stream_writer(principal)
        closed = False
        with transaction(engine) as session:
            row = session.execute(
                select(StreamRecord).where(col(StreamRecord.id) == stream_id).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                raise NotFound(f"stream {stream_id} is not known")
            if row.status != StreamStatus.CLOSED:
                row.status = StreamStatus.CLOSED
                row.closed_at = datetime.now(UTC)
                session.add(row)
                stage(session, closed_event(row))
                session.flush()
                closed = True
            view = stream_view(session, row)
            info = StreamInfo.of(row)
        if closed:
            ingestor.closed(info)  # after the commit: e.g. the live hub tells its watchers
        return view

    return router


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
        query = select(col(StreamRecord.patient_id))
        if stream is not None:
            query = query.where(col(StreamRecord.id) == stream)
        elif session is not None:
            query = query.where(col(StreamRecord.session_id) == session)
        else:
            return None
        with Session(self.engine) as s:
            return s.execute(
                query.order_by(col(StreamRecord.created_at).desc()).limit(1)
            ).scalar_one_or_none()
