"""The audit service app: AuditEvent over FHIR (read-only), stored from the audit topic."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.engine import Engine

from relearn.audit.api import require_audit_scope
from relearn.audit.config import Settings
from relearn.audit.events import CONSUMED_TOPICS
from relearn.audit.handlers import audit_handlers
from relearn.audit.resources import DEFINITIONS
from relearn.audit.service import AuditLog
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import EventConsumer
from relearn.shared.fhir import FhirResponse, capability_statement, fhir_router
from relearn.shared.service import BackgroundWorker, ServiceSettings, create_service_app, fhir_store


def _settings(settings: ServiceSettings) -> Settings:
    return settings if isinstance(settings, Settings) else Settings(**settings.model_dump())


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer | BackgroundWorker]:
    audit = _settings(settings)
    log = AuditLog(fhir_store(DEFINITIONS, audit))
    return [
        EventConsumer(
            engine,
            audit.kafka_bootstrap,
            group_id="audit-store",
            topics=list(CONSUMED_TOPICS),
            handlers=audit_handlers(log),
            max_batch=audit.store_batch,
        )
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    store = fhir_store(DEFINITIONS, settings)
    # Every AuditEvent route needs a scope naming AuditEvent; the CapabilityStatement stays open.
    guarded = APIRouter(dependencies=[Depends(require_audit_scope)])
    guarded.include_router(fhir_router(DEFINITIONS, store, base_url=settings.fhir_base_url))
    statement = capability_statement(
        DEFINITIONS,
        base_url=settings.fhir_base_url,
        software_name=f"Relearn {settings.service_name}",
        version="0.1.0",
        token_url=f"{settings.auth_issuer}/token",
    )
    metadata = APIRouter(prefix="/fhir", default_response_class=FhirResponse)

    @metadata.get("/metadata", tags=["FHIR"], summary="CapabilityStatement (no token needed)")
    def capability_route() -> FhirResponse:
        return FhirResponse(statement)

    return create_service_app(
        settings,
        title="Relearn audit service",
        description="AuditEvent (IHE BALP) of every access to every Relearn service, searchable over FHIR.",
        routers=[guarded, metadata],
        consumers=consumers,
        engine=engine,
        token_verifier=token_verifier,
    )
