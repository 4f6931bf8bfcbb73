"""The reports service app: DiagnosticReport over FHIR, /reports over the domain API, plan events in."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.reports.api import reports_router
from relearn.reports.config import Settings
from relearn.reports.handlers import handlers
from relearn.reports.resources import DEFINITIONS
from relearn.reports.service import ReportService
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import PLAN_EVENTS, REPORTS_EVENTS, EventConsumer
from relearn.shared.service import ServiceSettings, create_service_app, fhir_api, fhir_store


def _settings(settings: ServiceSettings) -> Settings:
    return settings if isinstance(settings, Settings) else Settings()


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    s = _settings(settings)
    service = ReportService(fhir_store(DEFINITIONS, s), s)
    return [
        EventConsumer(
            engine,
            s.kafka_bootstrap,
            group_id="reports",
            topics=[PLAN_EVENTS, REPORTS_EVENTS],
            handlers=handlers(service),
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
    fhir, _ = fhir_api(DEFINITIONS, settings, store=store)
    service = ReportService(store, settings)
    return create_service_app(
        settings,
        title="Relearn reports service",
        description="Progress reports and discharge summaries as FHIR DiagnosticReport, with PDF and HTML.",
        routers=[reports_router(service), fhir],
        consumers=consumers,
        engine=engine,
        token_verifier=token_verifier,
    )
