"""FHIR mapping: topics as Basic, SubscriptionStatus Parameters and notification Bundles (Backport IG)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from relearn.shared.fhir import CANONICAL_URL, format_instant
from relearn.subscriptions.domain.topics import TOPICS, Topic

_XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
_BACKPORT_TOPIC = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-topic"
)
TOPIC_CANONICAL = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
    "capabilitystatement-subscriptiontopic-canonical"
)
_STATUS_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
)
_NOTIFICATION_PROFILE = (
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"
)


def topic_resource(topic: Topic) -> dict[str, Any]:
    """The topic as an R4 Basic with the R5 SubscriptionTopic cross-version extensions."""
    filters = [
        {
            "url": f"{_XVER}.canFilterBy",
            "extension": [
                {"url": "description", "valueMarkdown": f.description},
                {"url": "resource", "valueUri": topic.resource},
                {"url": "filterParameter", "valueString": f.name},
            ],
        }
        for f in topic.filters
    ]
    return {
        "resourceType": "Basic",
        "id": f"topic-{topic.slug}",
        "meta": {"profile": [_BACKPORT_TOPIC]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        "extension": [
            {"url": f"{_XVER}.url", "valueUri": topic.url},
            {"url": f"{_XVER}.version", "valueString": "1"},
            {"url": f"{_XVER}.title", "valueString": topic.title},
            {"url": f"{_XVER}.status", "valueCode": "active"},
            {"url": f"{_XVER}.description", "valueMarkdown": topic.description},
            {
                "url": f"{_XVER}.eventTrigger",
                "extension": [
                    {
                        "url": "description",
                        "valueMarkdown": "Relearn domain events: " + ", ".join(topic.event_types),
                    },
                    {
                        "url": "event",
                        "valueCodeableConcept": {
                            "coding": [
                                {"system": f"{CANONICAL_URL}/CodeSystem/event-type", "code": t}
                                for t in topic.event_types
                            ]
                        },
                    },
                    {"url": "resource", "valueUri": topic.resource},
                ],
            },
            *filters,
            {
                "url": f"{_XVER}.notificationShape",
                "extension": [{"url": "resource", "valueUri": topic.resource}],
            },
        ],
    }


def topic_resources() -> list[dict[str, Any]]:
    return [topic_resource(t) for t in TOPICS]


@dataclass(frozen=True)
class EventView:
    number: int
    occurred_at: datetime
    focus: str | None  # None: withheld (payload empty, or the owner's scopes no longer cover it)
    version: str | None = None  # the focus version the event was about, when known
    resource: dict[str, Any] | None = None  # full-resource: the focus as it was at that version
    note: str | None = None  # full-resource: why this event's focus went out id-only


def status_parameters(
    *,
    base_url: str,
    subscription_id: str,
    topic: str,
    status: str,
    kind: str,
    events_since_start: int,
    events: Sequence[EventView] = (),
    error: str | None = None,
) -> dict[str, Any]:
    """The SubscriptionStatus (backport-subscription-status-r4) Parameters."""
    params: list[dict[str, Any]] = [
        {
            "name": "subscription",
            "valueReference": {"reference": f"{base_url}/Subscription/{subscription_id}"},
        },
        {"name": "topic", "valueCanonical": topic},
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for e in events:
        parts: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(e.number)},
            {"name": "timestamp", "valueInstant": format_instant(e.occurred_at)},
        ]
        if e.focus:
            parts.append({"name": "focus", "valueReference": {"reference": f"{base_url}/{e.focus}"}})
        params.append({"name": "notification-event", "part": parts})
    if error:
        params.append(
            {"name": "error", "valueCodeableConcept": {"text": error}},
        )
    for e in events:
        if e.note:
            what = f"{e.focus} sent id-only" if e.focus else "focus withheld"
            text = f"event {e.number}: {what}: {e.note}"
            params.append({"name": "error", "valueCodeableConcept": {"text": text}})
    return {
        "resourceType": "Parameters",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [_STATUS_PROFILE]},
        "parameter": params,
    }


def focus_entry(base_url: str, event: EventView) -> dict[str, Any]:
    """A notification entry for one event's focus: fullUrl and request (id-only), the resource too
    (full-resource), and the version it was about."""
    assert event.focus is not None
    version = event.version or (
        str((event.resource.get("meta") or {}).get("versionId") or "") or None if event.resource else None
    )
    created = version == "1"
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{event.focus}"}
    if event.resource is not None:
        entry["resource"] = event.resource
    entry["request"] = {"method": "POST" if created else "PUT", "url": event.focus}
    response: dict[str, Any] = {"status": "201" if created else "200"}
    if version:
        response["etag"] = f'W/"{version}"'
    entry["response"] = response
    return entry


def notification_bundle(
    status: dict[str, Any],
    *,
    subscription_id: str,
    at: datetime,
    base_url: str = "",
    events: Sequence[EventView] = (),
) -> dict[str, Any]:
    """A notification (type ``history``) whose first entry is the SubscriptionStatus, then one entry per
    event focus given (id-only and full-resource payloads; one per focus version, in event order)."""
    latest: dict[tuple[str, str | None], EventView] = {}
    for e in events:
        if e.focus:
            latest.setdefault((e.focus, e.version), e)
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [_NOTIFICATION_PROFILE]},
        "type": "history",
        "timestamp": format_instant(at),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{status['id']}",
                "resource": status,
                "request": {"method": "GET", "url": f"Subscription/{subscription_id}/$status"},
                "response": {"status": "200"},
            },
            *(focus_entry(base_url, e) for e in latest.values()),
        ],
    }


def searchset(resources: Sequence[dict[str, Any]], at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "timestamp": format_instant(at),
        "total": len(resources),
        "entry": [
            {"fullUrl": f"urn:uuid:{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ],
    }


def parameters(**values: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": name.replace("_", "-"), "valueString": v} for name, v in values.items()],
    }
