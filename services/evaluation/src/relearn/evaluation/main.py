"""The evaluation service app: Observations over FHIR, evaluations over the domain API."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.evaluation.config import Settings
from relearn.evaluation.events import observation_recorded_hook
from relearn.evaluation.resources import DEFINITIONS
from relearn.shared.app import create_service_app, fhir_api
from relearn.shared.auth.dependency import TokenVerifier


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    fhir, _store = fhir_api(DEFINITIONS, settings, hooks=[observation_recorded_hook])
    return create_service_app(
        settings,
        title="Relearn evaluation service",
        description="Initial evaluations, re-assessments and every measurement as FHIR Observation.",
        routers=[fhir],
        engine=engine,
        token_verifier=token_verifier,
    )
