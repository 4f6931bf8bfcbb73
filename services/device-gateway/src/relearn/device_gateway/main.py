"""The device gateway app: the device registry (FHIR Device); streams and metrics come next."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from relearn.device_gateway.config import Settings
from relearn.device_gateway.resources import DEFINITIONS
from relearn.shared.app import create_service_app, fhir_api
from relearn.shared.auth.dependency import TokenVerifier


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
        title="Relearn device-gateway service",
        description=__doc__ or "",
        routers=[fhir],
        engine=engine,
        token_verifier=token_verifier,
    )
