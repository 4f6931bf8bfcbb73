"""The plan service app: care plans, goals and exercise prescriptions over FHIR; the plan API; events in."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.plan.api import catalogue_router, plans_router
from relearn.plan.config import Settings
from relearn.plan.domain.catalogue import load_catalogue
from relearn.plan.handlers import plan_handlers, sweep_evidence
from relearn.plan.resources import DEFINITIONS
from relearn.plan.service import PlanService
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import DEVICE_METRICS, EVALUATION_EVENTS, SESSIONS_EVENTS, EventConsumer
from relearn.shared.service import (
    BackgroundWorker,
    PeriodicWorker,
    ServiceSettings,
    create_service_app,
    fhir_api,
    fhir_store,
)


def build_service(settings: ServiceSettings) -> PlanService:
    return PlanService(fhir_store(DEFINITIONS, settings), load_catalogue())


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer | BackgroundWorker]:
    service = build_service(settings)
    interval = settings.evidence_sweep_interval_s if isinstance(settings, Settings) else 15.0
    return [
        EventConsumer(
            engine,
            settings.kafka_bootstrap,
            group_id="plan",
            topics=[EVALUATION_EVENTS, SESSIONS_EVENTS, DEVICE_METRICS],
            handlers=plan_handlers(service),
        ),
        PeriodicWorker(engine, "plan-evidence-sweep", sweep_evidence(service), interval_s=interval),
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    service = build_service(settings)
    fhir, _ = fhir_api(DEFINITIONS, settings, store=service.store)
    return create_service_app(
        settings,
        title="Relearn plan service",
        description="Care plans (FHIR CarePlan, Goal, ServiceRequest) drafted from evaluations, reviewed and "
        "activated by therapists, and moved through progressions and competence stages by session and device "
        "events. Every change is a new CarePlan version with its reason and evidence.",
        routers=[plans_router(service), catalogue_router(service), fhir],
        consumers=consumers,
        startup=[service.publish_code_systems],
        engine=engine,
        token_verifier=token_verifier,
    )
