"""The evaluation service app: Observations over FHIR, evaluations over the domain API, events in."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.evaluation.api import evaluation_router
from relearn.evaluation.config import Settings
from relearn.evaluation.events import observation_recorded_hook
from relearn.evaluation.handlers import handlers
from relearn.evaluation.resources import DEFINITIONS
from relearn.evaluation.service import publish_codesystem, publish_questionnaires, questionnaire_total_hook
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import DEVICE_METRICS, SESSIONS_EVENTS, EventConsumer
from relearn.shared.fhir import FhirStore
from relearn.shared.service import ServiceSettings, create_service_app, fhir_api, fhir_store


def build_store(settings: ServiceSettings) -> FhirStore:
    return fhir_store(DEFINITIONS, settings, hooks=[observation_recorded_hook, questionnaire_total_hook])


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    return [
        EventConsumer(
            engine,
            settings.kafka_bootstrap,
            group_id="evaluation",
            topics=[DEVICE_METRICS, SESSIONS_EVENTS],
            handlers=handlers(build_store(settings)),
        )
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    store = build_store(settings)
    fhir, _ = fhir_api(DEFINITIONS, settings, store=store)
    return create_service_app(
        settings,
        title="Relearn evaluation service",
        description="Initial evaluations, re-assessments and every measurement as FHIR Observation.",
        routers=[evaluation_router(store, settings.fhir_base_url), fhir],
        consumers=consumers,
        startup=[partial(publish_codesystem, store), partial(publish_questionnaires, store)],
        engine=engine,
        token_verifier=token_verifier,
    )
