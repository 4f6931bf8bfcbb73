"""The authorization service app: SMART on FHIR discovery, Backend Services and App Launch grants,
introspection and revocation, signed with its own keys; clients (and development users) come from the
directory files, loaded into its database at start."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy.engine import Engine

from relearn.authorization.api import auth_router
from relearn.authorization.config import Settings
from relearn.authorization.domain.directory import UserDirectory, parse_clients, parse_users
from relearn.authorization.service import Authorization
from relearn.authorization.service.jwks import JwksFetcher
from relearn.authorization.service.keys import SigningKeys
from relearn.shared.auth import JwtVerifier, TokenVerifier, parse_jwks
from relearn.shared.events import EventConsumer
from relearn.shared.service import (
    BackgroundWorker,
    PeriodicWorker,
    ServiceSettings,
    create_service_app,
    transaction,
)


def _settings(settings: ServiceSettings) -> Settings:
    return settings if isinstance(settings, Settings) else Settings(**settings.model_dump())


def build(settings: Settings) -> Authorization:
    development = settings.environment in ("development", "test")
    keys = SigningKeys(settings.signing_keys_file, create=settings.creates_signing_keys())
    users = UserDirectory()
    if settings.users_file is not None:
        if not development:
            raise ValueError("AUTHORIZATION_USERS_FILE is a development directory; production uses an IdP")
        users = parse_users(settings.users_file.read_text(encoding="utf-8"), str(settings.users_file))
    return Authorization(settings, keys, JwksFetcher(settings), users)


def load_directory(authz: Authorization, engine: Engine) -> None:
    """Register the clients of ``AUTHORIZATION_CLIENTS_FILE`` (at every start: the file is the source)."""
    path = authz.settings.clients_file
    if path is None:
        return
    directory = parse_clients(path.read_text(encoding="utf-8"), str(path))
    with transaction(engine) as session:
        authz.load_clients(session, directory)


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer | BackgroundWorker]:
    authz = build(_settings(settings))
    return [PeriodicWorker(engine, "authorization-purge", authz.purge, interval_s=60.0)]


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    authz = build(settings)
    verifier = token_verifier or JwtVerifier(
        parse_jwks(authz.keys.public_jwks(), origin="the authorization service"),
        issuer=settings.issuer.rstrip("/"),
        audience=settings.auth_audience,
    )
    router = auth_router(authz, settings)
    app = create_service_app(
        settings,
        title="Relearn authorization service",
        description="SMART on FHIR authorization server: Backend Services (private_key_jwt), App Launch "
        "(code + PKCE S256), device clients, introspection and revocation.",
        routers=[router],
        consumers=consumers,
        startup=[partial(load_directory, authz)],
        engine=engine,
        token_verifier=verifier,
        # RFC 6749 JSON errors and an HTML page, not OperationOutcomes: documented as the routes declare.
        other_errors=[route.path for route in router.routes if isinstance(route, APIRoute)],
    )
    app.state.authorization = authz
    return app
