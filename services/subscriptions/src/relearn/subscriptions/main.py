"""The subscriptions service app: Subscription and its topics over FHIR, the notifier and the senders."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.engine import Engine

from relearn.shared.auth import TokenVerifier
from relearn.shared.events import EventConsumer
from relearn.shared.fhir import (
    CANONICAL_URL,
    FhirResponse,
    FhirStore,
    capability_statement,
    fhir_router,
    publish_shipped,
)
from relearn.shared.service import BackgroundWorker, ServiceSettings, create_service_app, fhir_store
from relearn.subscriptions import mapper
from relearn.subscriptions.api import domain_router, operations_router, remember_principal, websocket_router
from relearn.subscriptions.config import Settings
from relearn.subscriptions.domain.subscription import PROFILE
from relearn.subscriptions.domain.topics import TOPICS
from relearn.subscriptions.events import CONSUMED_TOPICS
from relearn.subscriptions.handlers import notifier_handlers
from relearn.subscriptions.resources import TOPIC, definitions
from relearn.subscriptions.service import Subscriptions
from relearn.subscriptions.service.delivery import RestHookSender
from relearn.subscriptions.service.websocket import WebsocketChannel

_OPERATIONS = ("status", "events", "resend", "rotate-secret", "get-ws-binding-token")
_OWN_OPERATIONS = ("resend", "rotate-secret")


def _settings(settings: ServiceSettings) -> Settings:
    return settings if isinstance(settings, Settings) else Settings(**settings.model_dump())


def build(settings: Settings) -> tuple[FhirStore, Subscriptions]:
    defs = definitions(settings)
    store = fhir_store(defs, settings)
    subs = Subscriptions(store, defs[0], settings)
    store.write_hooks.append(subs.on_write)
    return store, subs


def consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer | BackgroundWorker]:
    _, subs = build(_settings(settings))
    return [
        EventConsumer(
            engine,
            settings.kafka_bootstrap,
            group_id="subscriptions-notifier",
            topics=list(CONSUMED_TOPICS),
            handlers=notifier_handlers(subs),
            # A broker that lost its log and the group's offsets: read again from the earliest record
            # rather than wait for offsets that no longer exist (numbering skips events by their id).
            lost_log_check_s=10.0,
        ),
        RestHookSender(engine, subs),
    ]


def capability(settings: Settings) -> dict[str, Any]:
    statement = capability_statement(
        definitions(settings),
        base_url=settings.fhir_base_url,
        software_name=f"Relearn {settings.service_name}",
        version="0.1.0",
        token_url=f"{settings.auth_issuer}/token",
    )
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] == "Subscription":
            resource["supportedProfile"] = [PROFILE]
            resource["extension"] = [{"url": mapper.TOPIC_CANONICAL, "valueCanonical": t.url} for t in TOPICS]
            resource["operation"] = [
                {
                    "name": op,
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/"
                    f"backport-subscription-{op}"
                    if op not in _OWN_OPERATIONS
                    else f"{CANONICAL_URL}/OperationDefinition/subscription-{op}",
                }
                for op in _OPERATIONS
            ]
    return statement


def publish_topics(store: FhirStore, engine: Engine) -> None:
    publish_shipped(store, engine, TOPIC, mapper.topic_resources())


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    token_verifier: TokenVerifier | None = None,
) -> FastAPI:
    settings = settings or Settings()
    store, subs = build(settings)
    fhir = fhir_router(list(store.definitions.values()), store, base_url=settings.fhir_base_url)
    # Every FHIR route learns who writes, so a Subscription keeps its owner's scopes (checked at each send).
    owned = APIRouter(dependencies=[Depends(remember_principal)])
    owned.include_router(fhir)
    statement = capability(settings)
    metadata = APIRouter(prefix="/fhir", default_response_class=FhirResponse)

    @metadata.get("/metadata", tags=["FHIR"], summary="CapabilityStatement (no token needed)")
    def capability_route() -> FhirResponse:
        return FhirResponse(statement)

    app = create_service_app(
        settings,
        title="Relearn subscriptions service",
        description="FHIR R4 Subscriptions (R5 Backport IG, STU 1.1) delivered from the domain events.",
        routers=[operations_router(subs), domain_router(subs), owned, metadata],
        consumers=consumers,
        startup=[partial(publish_topics, store)],
        engine=engine,
        token_verifier=token_verifier,
    )
    channel: WebsocketChannel | None = None

    def _channel() -> WebsocketChannel:
        nonlocal channel
        if channel is None:
            channel = WebsocketChannel(app.state.engine, subs)
        return channel

    app.include_router(websocket_router(_channel, settings.delivery_poll_s))
    return app
