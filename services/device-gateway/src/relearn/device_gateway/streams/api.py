"""Stream bindings (``/streams``): whose recording a device's stream is (patient, session), and how made.

A clinician's app or an EHR opens a binding before a recording (``POST /streams``), the device sends frames
naming its ``streamId`` (``/ingest``), and the binding is closed at the end of the recording
(``POST /streams/{id}/close``), which stages ``device.<emg|balance>-stream-closed.v1`` in the same
transaction so the processor computes the whole-recording metrics. ``GET /streams/{id}`` shows the counters,
the gaps in sequence and the stream's origin (the first frame's start time); ``GET /streams/{id}/windows`` the
1 s window metrics of an EMG stream (the window-level data; the FHIR surface has one summary Observation per
metric of the trial, with the window series inside).

Writes need ``user/`` or ``system/`` ``Observation.write``; reads ``Observation.read`` (a ``patient/`` token
sees only its own patient's streams; a device token the streams of the devices it may push for).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from relearn.device_gateway.ingest import Ingestor
from relearn.device_gateway.streams import service
from relearn.device_gateway.streams.schemas import StreamIn, StreamView, WindowsView
from relearn.shared.auth import PrincipalDep
from relearn.shared.service import EngineDep, SessionDep

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


def streams_router(ingestor: Ingestor) -> APIRouter:
    router = APIRouter(prefix="/streams", tags=["streams"], responses=_ERRORS)

    @router.post("", status_code=201, summary="Open a stream binding (device stream -> patient, session)")
    def create_stream(body: StreamIn, principal: PrincipalDep, session: SessionDep) -> StreamView:
        return service.open_stream(session, principal, body)

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
        return service.list_streams(
            session,
            principal,
            patient=patient,
            session_id=session_id,
            device=device,
            status=status,
            count=count,
        )

    @router.get("/{stream_id}", summary="A stream binding with its counters, gaps and origin")
    def get_stream(stream_id: StreamId, principal: PrincipalDep, session: SessionDep) -> StreamView:
        return service.read_stream(session, principal, stream_id)

    @router.get(
        "/{stream_id}/windows",
        summary="The stream's 1 s window metrics (EMG), as recorded: the window-level data behind the trial "
        "summary Observations",
    )
    def stream_windows(
        stream_id: StreamId,
        principal: PrincipalDep,
        session: SessionDep,
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="First window index")] = 0,
        count: Annotated[int, Query(alias="_count", ge=1, le=600, description="At most this many")] = 120,
    ) -> WindowsView:
        return service.read_windows(session, principal, stream_id, offset=offset, count=count)

    @router.post(
        "/{stream_id}/close",
        summary="Close a stream (stream-closed event -> whole-recording metrics); closing again is a no-op",
    )
    def close_stream(stream_id: StreamId, principal: PrincipalDep, engine: EngineDep) -> StreamView:
        return service.close_stream(engine, principal, stream_id, ingestor.closed)

    return router
