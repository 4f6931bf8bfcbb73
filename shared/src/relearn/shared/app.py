"""The one way a Relearn service becomes a FastAPI app.

``create_service_app`` wires what every service shares: JSON logs with a request id,
OperationOutcome errors, the bearer-token verifier, health and readiness, the engine,
and — when ``settings.run_workers`` is on — the outbox relay and the service's event
consumers as background threads. A service passes its routers and its consumers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from sqlalchemy.engine import Engine

from relearn.shared.auth.dependency import TokenVerifier
from relearn.shared.auth.tokens import verifier_from_settings
from relearn.shared.db import make_engine
from relearn.shared.events.kafka import broker_reachable
from relearn.shared.fhir.capability import capability_statement
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.handlers import install_error_handlers
from relearn.shared.fhir.routes import fhir_router
from relearn.shared.fhir.store import FhirStore, WriteHook
from relearn.shared.health import BrokerProbe, health_router
from relearn.shared.logging import bound_context, configure_logging
from relearn.shared.settings import ServiceSettings
from relearn.shared.workers import WorkerFactory, Workers

logger = logging.getLogger(__name__)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    consumers: WorkerFactory | None = None,
    startup: Sequence[Callable[[Engine], None]] = (),
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
    version: str = "0.1.0",
) -> FastAPI:
    """Build a service app; ``engine``/``token_verifier`` may be injected by tests.

    ``startup`` callables run once the engine exists, before requests are served (e.g. to
    publish reference data such as a CodeSystem).
    """
    configure_logging(settings.service_name, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = engine or make_engine(settings.resolved_database_url())
        for step in startup:
            step(app.state.engine)
        app.state.token_verifier = token_verifier or verifier_from_settings(settings)
        app.state.broker_probe = BrokerProbe(
            lambda: broker_reachable(settings.kafka_bootstrap, timeout_s=2.0)
        )
        workers = Workers(app.state.engine, settings, consumers)
        app.state.workers = workers
        if settings.run_workers:
            workers.start()
        logger.info("service started", extra={"port": settings.port, "workers": settings.run_workers})
        try:
            yield
        finally:
            workers.stop()
            if engine is None:
                app.state.engine.dispose()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan)
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        with bound_context(request_id=rid):
            response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        return response

    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    return app


def fhir_store(
    definitions: Sequence[ResourceDefinition],
    settings: ServiceSettings,
    *,
    hooks: Sequence[Callable[[FhirStore], WriteHook]] = (),
) -> FhirStore:
    """The store for the types a service owns, with its write hooks (routes and consumers share it)."""
    store = FhirStore(base_url=settings.fhir_base_url)
    for rdef in definitions:
        store.register(rdef)
    store.write_hooks.extend(make(store) for make in hooks)
    return store


def fhir_api(
    definitions: Sequence[ResourceDefinition],
    settings: ServiceSettings,
    *,
    store: FhirStore | None = None,
    hooks: Sequence[Callable[[FhirStore], WriteHook]] = (),
) -> tuple[APIRouter, FhirStore]:
    """The FHIR routes (and ``/fhir/metadata``) for the types a service owns, and their store."""
    store = store or fhir_store(definitions, settings, hooks=hooks)
    capability = capability_statement(
        definitions,
        base_url=settings.fhir_base_url,
        software_name=f"Relearn {settings.service_name}",
        version="0.1.0",
        token_url=f"{settings.auth_issuer}/token",
    )
    return fhir_router(definitions, store, base_url=settings.fhir_base_url, capability=capability), store
