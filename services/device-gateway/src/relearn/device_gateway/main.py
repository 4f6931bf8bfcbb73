"""The device gateway: the device registry (FHIR Device), stream bindings, ingest, metrics, live biofeedback.

Devices (EMG sensors, balance boards, the clinic hubs that carry them) are FHIR Device resources. A
clinician's app or an EHR binds a device's stream to a patient (``/streams``); the device sends frames with
device credentials (``/ingest/frames``, ``/ingest/ws``); each accepted frame is stored once and published
on the raw topics through the outbox (the relay runs with the app's workers). The metrics processor
consumes the raw topics (``processing``) and the process that stored a frame shows it live
(``WS /biofeedback/ws``).

Layout (docs/development.md, "Shape of a service"; one area per concern, the same module names inside):
``streams/`` (bindings: ``api``, ``schemas``, ``service``, ``repository``, ``tables``, ``events`` - the raw
events out, ``domain`` - the EMG protocol of a binding), ``ingest/`` (``api`` - HTTP and WebSocket,
``schemas`` - the wire bodies, ``service`` - the :class:`Ingestor` and back-pressure, ``repository`` - the
outbox backlog), ``live/`` (``api``, ``service`` - the hub, ``domain`` - the display filters),
``processing/`` (the metrics consumer: ``handlers``, ``service``, ``repository``, ``tables``, ``events``,
``domain`` - the metrics of a window or recording), ``device_profile/`` (what a Device declares: ``domain/``
- codes, spec, matching; ``mapper`` - a FHIR Device -> its spec; ``service`` - the spec cache and the Device
validator; ``repository`` reads Devices from the FHIR store), ``authz/service`` (who may do what), and
``signals/``, the domain: pure signal processing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import Engine

from relearn.device_gateway.config import Settings
from relearn.device_gateway.device_profile import DeviceSpecCache, device_written_hook
from relearn.device_gateway.ingest import AfterClose, AfterCommit, Ingestor, ingest_router, openapi_schemas
from relearn.device_gateway.live import LiveHub, biofeedback_router
from relearn.device_gateway.live import StreamInfo as LiveStream
from relearn.device_gateway.processing import metrics_consumers
from relearn.device_gateway.resources import DEFINITIONS, publish_code_systems
from relearn.device_gateway.streams.api import streams_router
from relearn.device_gateway.streams.service import PatientLookup
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import EventConsumer
from relearn.shared.service import ServiceSettings, create_service_app, fhir_api


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    """The gateway's event consumers (run with the outbox relay when ``run_workers`` is on): the metrics
    processor, group ``device-gateway-metrics`` on the raw topics."""
    return metrics_consumers(engine, settings)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
    after_commit: Sequence[AfterCommit] = (),
    after_close: Sequence[AfterClose] = (),
    extra_routers: Sequence[APIRouter] = (),
    startup: Sequence[Callable[[Engine], None]] = (),
) -> FastAPI:
    """The gateway app. Live biofeedback is computed in the process that ingests the frames (no broker
    hop): each committed frame goes to the process's ``LiveHub``, which serves ``WS /biofeedback/ws``.
    ``after_commit``/``after_close`` and ``extra_routers`` add further listeners (tests, benchmarks).
    """
    settings = settings or Settings()
    # Device specs (kind, channels, rate) per device id, dropped when a Device is written here.
    device_specs = DeviceSpecCache()
    fhir, store = fhir_api(DEFINITIONS, settings, hooks=[device_written_hook(device_specs)])
    ingestor = Ingestor(settings, device_specs)
    hub = LiveHub(display_rate_hz=settings.biofeedback_rate_hz)
    ingestor.after_commit.append(lambda info, frame: hub.publish(LiveStream.from_binding(info), frame))
    ingestor.after_close.append(lambda info: hub.close_stream(info.id))
    ingestor.after_commit.extend(after_commit)
    ingestor.after_close.extend(after_close)
    patients = PatientLookup()
    app = create_service_app(
        settings,
        title="Relearn device-gateway service",
        description=__doc__ or "",
        routers=[
            streams_router(ingestor),
            ingest_router(ingestor),
            biofeedback_router(hub, patients),
            *extra_routers,
            fhir,
        ],
        consumers=consumers,
        startup=[patients.bind, partial(publish_code_systems, store), *startup],
        engine=engine,
        body_limits=[("/ingest/", settings.ingest_max_body_bytes)],
        token_verifier=token_verifier,
    )
    app.state.ingestor = ingestor
    app.state.patients = patients
    app.state.live_hub = hub
    app.state.device_specs = device_specs
    _document_ingest_body(app)
    return app


def _document_ingest_body(app: FastAPI) -> None:
    """Add the ingest request schemas (the route reads its raw body off the event loop) to the OpenAPI."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi_schemas())
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
