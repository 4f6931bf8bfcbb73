"""The sessions service: the log of therapy sessions and home practice, as FHIR Encounter and Procedure."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.sessions.api import sessions_router
from relearn.sessions.config import Settings
from relearn.sessions.domain.plan_view import PLAN_EVENT_TYPES
from relearn.sessions.domain.remote_monitoring import DeviceDaysRule
from relearn.sessions.handlers import on_plan_event
from relearn.sessions.resources import DEFINITIONS
from relearn.sessions.service import SessionRecorder
from relearn.shared.auth import TokenVerifier
from relearn.shared.events import PLAN_EVENTS, EventConsumer
from relearn.shared.service import ServiceSettings, create_service_app, fhir_api

CONSUMER_GROUP = "sessions"

DESCRIPTION = """\
The sessions service: the log of therapy sessions and home practice, as FHIR Encounter and Procedure.

Apps use the sessions API (``/sessions``, ``/patients/{id}/adherence``); EHRs read and search the
FHIR view (``/fhir/Encounter``, ``/fhir/Procedure``). Sessions are validated against a local read
model of care plans kept from the plan service's events; closing a session emits
``session.logged.v1`` for the progression engine and the evaluation service.
"""


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    """Plan events keep the read model of care plans current."""
    return [
        EventConsumer(
            engine,
            settings.kafka_bootstrap,
            group_id=CONSUMER_GROUP,
            topics=[PLAN_EVENTS],
            handlers=dict.fromkeys(PLAN_EVENT_TYPES, on_plan_event),
        )
    ]


def rpm_rule(settings: Settings) -> DeviceDaysRule:
    return DeviceDaysRule(min_days=settings.rpm_min_days, period_days=settings.rpm_period_days)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    fhir, store = fhir_api(DEFINITIONS, settings)
    return create_service_app(
        settings,
        title="Relearn sessions service",
        description=DESCRIPTION,
        routers=[sessions_router(SessionRecorder(store, rpm_rule(settings))), fhir],
        consumers=consumers,
        engine=engine,
        token_verifier=token_verifier,
    )
