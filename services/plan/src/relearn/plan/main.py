"""The plan service app: care plans, goals and exercise prescriptions over FHIR; events in."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.plan.config import Settings
from relearn.plan.measurements import record_observation
from relearn.plan.resources import DEFINITIONS
from relearn.shared.app import create_service_app, fhir_api
from relearn.shared.auth.dependency import TokenVerifier
from relearn.shared.events.consumer import EventConsumer
from relearn.shared.events.topics import EVALUATION_EVENTS
from relearn.shared.settings import ServiceSettings


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    return [
        EventConsumer(
            engine,
            settings.kafka_bootstrap,
            group_id="plan",
            topics=[EVALUATION_EVENTS],
            handlers={"observation.recorded.v1": record_observation},
        )
    ]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    fhir, _store = fhir_api(DEFINITIONS, settings)
    return create_service_app(
        settings,
        title="Relearn plan service",
        description="Care plans (FHIR CarePlan, Goal, ServiceRequest) that move through progressions and "
        "competence stages.",
        routers=[fhir],
        consumers=consumers,
        engine=engine,
        token_verifier=token_verifier,
    )
