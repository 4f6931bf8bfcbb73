"""The FHIR resource types the subscriptions service serves: Subscription, and the topics as Basic.

Topics are published read-only as R4 ``Basic`` resources carrying the R5 SubscriptionTopic as cross-version
extensions (the Backport IG's choice for R4 servers; R4B's ``SubscriptionTopic`` resource is not used
because the platform declares FHIR 4.0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

from fhir.resources.R4B.basic import Basic
from fhir.resources.R4B.subscription import Subscription

from relearn.shared.fhir import (
    PUBLISHED_INTERACTIONS,
    ResourceDefinition,
    Validator,
    reference,
    string,
    token,
)
from relearn.subscriptions.config import Settings
from relearn.subscriptions.domain.subscription import PROFILE, parse, without_secret

# The secret the Subscription being written carried, taken out of it before it is stored (the validator runs
# on the very dict the store then writes); the store's write hook, next in the same call, keeps it apart.
WRITTEN_SECRET: ContextVar[str | None] = ContextVar("relearn_subscription_secret", default=None)


def _validator(settings: Settings) -> Validator:
    allow_http = settings.environment != "production"

    def check(resource: dict[str, object]) -> None:
        parse(resource, allow_http=allow_http)
        extensions, secret = without_secret(resource)
        resource["extension"] = extensions
        WRITTEN_SECRET.set(secret)

    return check


def subscription_definition(settings: Settings) -> ResourceDefinition:
    return ResourceDefinition(
        type="Subscription",
        model=Subscription,
        profile=PROFILE,
        search_params=[
            token("status", "status"),
            token("type", "channel.type"),
            string("url", "channel.endpoint"),
            string("criteria", "criteria"),
            reference("patient", "extension.valueReference", targets=("Patient",)),
        ],
        compartment_param="patient",
        validators=[_validator(settings)],
        documentation=(
            "Subscriptions R5 Backport IG (STU 1.1) backport-subscription: criteria is a topic canonical "
            "(Basic?code=SubscriptionTopic) with backport-filter-criteria; channel rest-hook or websocket; "
            "payload empty, id-only or full-resource; heartbeat-period, timeout, max-count. Operations "
            "$status, $events, $resend, $get-ws-binding-token."
        ),
    )


TOPIC = ResourceDefinition(
    type="Basic",
    model=Basic,
    search_params=[token("code", "code"), token("url", "extension.valueUri")],
    interactions=PUBLISHED_INTERACTIONS,
    documentation="Subscription topics (R5 SubscriptionTopic as Backport IG cross-version extensions), "
    "published read-only; Basic?code=SubscriptionTopic lists them.",
)


def definitions(settings: Settings) -> Sequence[ResourceDefinition]:
    return [subscription_definition(settings), TOPIC]
