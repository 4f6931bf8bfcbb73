"""The one way a Relearn service becomes a FastAPI app.

``create_service_app`` wires what every service shares: JSON logs with a request id,
OperationOutcome errors, the bearer-token verifier, health and readiness, the engine,
and — when ``settings.run_workers`` is on — the outbox relay and the service's event
consumers as background threads. A service passes its routers and its consumers.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import APIRouter, FastAPI
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relearn.shared import idempotency
from relearn.shared.audit import AuditMiddleware
from relearn.shared.auth.dependency import TokenVerifier
from relearn.shared.auth.tokens import verifier_from_settings
from relearn.shared.db import make_engine
from relearn.shared.deadline import DeadlineMiddleware
from relearn.shared.events.kafka import broker_reachable
from relearn.shared.fhir.capability import capability_statement
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import Issue, operation_outcome
from relearn.shared.fhir.handlers import install_error_handlers
from relearn.shared.fhir.limits import FhirLimits
from relearn.shared.fhir.response import FhirResponse
from relearn.shared.fhir.router import fhir_router
from relearn.shared.fhir.store import FhirStore, WriteHook
from relearn.shared.guard import RequestGuard, settings_limits
from relearn.shared.health import BrokerProbe, health_router
from relearn.shared.logging import bound_context, configure_logging
from relearn.shared.openapi import install_error_docs
from relearn.shared.settings import ServiceSettings
from relearn.shared.workers import WorkerFactory, Workers

logger = logging.getLogger(__name__)

_REQUEST_ID = b"x-request-id"
# Answered without a token (docs/api.md).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/fhir/metadata"})


class RequestIdMiddleware:
    """Pure ASGI: each HTTP request runs with ``request_id`` bound in the log context, and its response
    carries it back as ``X-Request-ID``.

    The id is the request's ``X-Request-ID`` header when it sends a non-empty one, else a new uuid4 hex.
    WebSocket and lifespan scopes pass through untouched. An exception the app does not turn into a
    response is answered 500 by ``UnhandledErrors`` inside this middleware (so with the header).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        for name, value in scope["headers"]:
            if name.lower() == _REQUEST_ID:  # the first one, as ``request.headers.get`` would
                rid = value.decode("latin-1")
                break
        rid = rid or uuid.uuid4().hex
        header = (_REQUEST_ID, rid.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _REQUEST_ID]
                headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        with bound_context(request_id=rid):
            await self.app(scope, receive, send_with_id)


class UnhandledErrors:
    """Pure ASGI: an exception no handler turned into a response becomes a 500 OperationOutcome here.

    Starlette's outermost error middleware answers 500 too, but then re-raises, and uvicorn closes the
    connection: a client (the front door) that reuses its pooled connection gets "server disconnected"
    on its next, unrelated request. Answering here keeps the connection, so one error stays one error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:  # too late for another answer: let the server end the connection
                raise
            logger.exception(
                "unhandled error", extra={"path": scope.get("path"), "method": scope.get("method")}
            )
            outcome = operation_outcome([Issue("exception", "Internal server error")])
            await FhirResponse(outcome, status_code=500)(scope, receive, send)


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
    body_limits: Sequence[tuple[str, int]] = (),
    other_errors: Sequence[str] = (),
) -> FastAPI:
    """Build a service app; ``engine``/``token_verifier`` may be injected by tests.

    ``startup`` callables run once the engine exists, before requests are served (e.g. to
    publish reference data such as a CodeSystem). ``body_limits`` (path prefix, bytes) raise or
    lower ``settings.max_body_bytes`` for some routes (ingest). ``other_errors`` are paths whose errors are
    not OperationOutcomes (the OAuth endpoints' RFC 6749 JSON): their documented answers are left as declared.
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

    app.add_middleware(UnhandledErrors)  # innermost: an error anywhere below answers 500 itself
    # Inside the request id: refusals carry X-Request-ID too.
    app.add_middleware(DeadlineMiddleware, seconds=settings.request_deadline_s)
    app.add_middleware(RequestGuard, limits=settings_limits(settings, body_limits))
    # Outside the guard and the deadline (their refusals are audited too), inside the request id.
    app.add_middleware(AuditMiddleware, service=settings.service_name, base_url=settings.fhir_base_url)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router())
    for router in routers:
        app.include_router(router)
    install_error_docs(app, open_paths=OPEN_PATHS, other_errors=other_errors)
    idempotency.install(app, timedelta(seconds=settings.idempotency_retention_s))
    return app


def fhir_store(
    definitions: Sequence[ResourceDefinition],
    settings: ServiceSettings,
    *,
    hooks: Sequence[Callable[[FhirStore], WriteHook]] = (),
) -> FhirStore:
    """The store for the types a service owns, with its write hooks (routes and consumers share it)."""
    store = FhirStore(base_url=settings.fhir_base_url, limits=FhirLimits.from_settings(settings))
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
