"""What a Subscription (Subscriptions R5 Backport IG, STU 1.1, ``backport-subscription`` on R4) asks for.

:func:`parse` reads the topic (``criteria``), its filters (``_criteria`` ``backport-filter-criteria``), the
channel (``rest-hook`` or ``websocket``), the payload content (``empty``, ``id-only``, ``full-resource``), the
heartbeat period, timeout and max count, and refuses anything Relearn does not support with an
:class:`InvalidResource` naming the element. Pure: no FastAPI, SQL, Kafka or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relearn.shared.fhir import CANONICAL_URL, InvalidResource
from relearn.subscriptions.domain.topics import BY_URL, Topic

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
PROFILE = f"{BACKPORT}/backport-subscription"
FILTER_CRITERIA = f"{BACKPORT}/backport-filter-criteria"
PAYLOAD_CONTENT = f"{BACKPORT}/backport-payload-content"
HEARTBEAT = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT = f"{BACKPORT}/backport-timeout"
MAX_COUNT = f"{BACKPORT}/backport-max-count"
# Relearn's: the secret notifications are signed with (HMAC-SHA256 of the body, X-Relearn-Signature).
# Write-only: accepted on create and update, stored apart from the resource (reads show SECRET_MASK).
SECRET = f"{CANONICAL_URL}/StructureDefinition/subscription-secret"
SECRET_MASK = "********"
# Relearn's, set by the server: the patient a patient-scoped token subscribed for (compartment).
OWNER_PATIENT = f"{CANONICAL_URL}/StructureDefinition/subscription-patient"

CHANNELS = ("rest-hook", "websocket")
PAYLOADS = ("empty", "id-only", "full-resource")
STATUSES = ("requested", "active", "error", "off")
DEFAULT_TIMEOUT_S = 60
MAX_TIMEOUT_S = 7 * 86400
DEFAULT_MAX_COUNT = 20
MAX_MAX_COUNT = 500


@dataclass(frozen=True)
class SubscriptionSpec:
    status: str
    topic: Topic
    filters: Mapping[str, str]
    channel: str
    endpoint: str | None
    payload: str
    headers: tuple[tuple[str, str], ...]
    heartbeat_s: int | None
    timeout_s: int
    max_count: int
    secret: str | None
    end: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def _ext(element: Mapping[str, Any] | None, url: str) -> Mapping[str, Any] | None:
    for e in (element or {}).get("extension") or []:
        if isinstance(e, Mapping) and e.get("url") == url:
            return e
    return None


def _int_ext(element: Mapping[str, Any] | None, url: str, expr: str, lo: int, hi: int) -> int | None:
    e = _ext(element, url)
    if e is None:
        return None
    value = e.get("valueUnsignedInt", e.get("valuePositiveInt", e.get("valueInteger")))
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidResource(f"{expr} must be a whole number from {lo} to {hi}", expression=expr)
    return value


def parse(resource: Mapping[str, Any], *, allow_http: bool) -> SubscriptionSpec:
    """The Subscription's request, or InvalidResource naming the first unsupported element."""
    status = str(resource.get("status") or "")
    if status not in STATUSES:
        raise InvalidResource(
            f"Subscription.status must be one of {', '.join(STATUSES)}", expression="status"
        )
    criteria = str(resource.get("criteria") or "")
    topic = BY_URL.get(criteria)
    if topic is None:
        raise InvalidResource(
            f"Unsupported topic '{criteria}': Subscription.criteria must be the canonical URL of a topic "
            "Relearn publishes (Basic?code=SubscriptionTopic, listed in the CapabilityStatement)",
            expression="Subscription.criteria",
            issue_code="not-supported",
        )
    filters = _filters(resource.get("_criteria"), topic)
    channel = resource.get("channel") or {}
    ctype = str(channel.get("type") or "")
    if ctype not in CHANNELS:
        raise InvalidResource(
            f"Unsupported channel type '{ctype}': Relearn delivers over {' and '.join(CHANNELS)}",
            expression="Subscription.channel.type",
            issue_code="not-supported",
        )
    endpoint = channel.get("endpoint")
    if ctype == "rest-hook":
        endpoint = _endpoint(endpoint, allow_http)
    payload_type = channel.get("payload")
    if payload_type not in (None, "application/fhir+json", "application/json"):
        raise InvalidResource(
            f"Unsupported payload MIME type '{payload_type}': only application/fhir+json",
            expression="Subscription.channel.payload",
            issue_code="not-supported",
        )
    content_ext = _ext(channel.get("_payload"), PAYLOAD_CONTENT)
    content = str(content_ext.get("valueCode")) if content_ext else ("id-only" if payload_type else "empty")
    if content not in PAYLOADS:
        raise InvalidResource(
            f"Unsupported payload content '{content}': one of {', '.join(PAYLOADS)}",
            expression="Subscription.channel.payload.extension('backport-payload-content')",
            issue_code="not-supported",
        )
    headers: list[tuple[str, str]] = []
    for i, h in enumerate(channel.get("header") or []):
        name, sep, value = str(h).partition(":")
        if not sep or not name.strip() or any(c in name for c in " \r\n") or any(c in value for c in "\r\n"):
            raise InvalidResource(
                "A channel header is 'Name: value' on one line",
                expression=f"Subscription.channel.header[{i}]",
            )
        headers.append((name.strip(), value.strip()))
    heartbeat = _int_ext(channel, HEARTBEAT, "Subscription.channel.extension('heartbeat-period')", 1, 86400)
    timeout = _int_ext(channel, TIMEOUT, "Subscription.channel.extension('timeout')", 1, MAX_TIMEOUT_S)
    max_count = _int_ext(channel, MAX_COUNT, "Subscription.channel.extension('max-count')", 1, MAX_MAX_COUNT)
    secret_ext = _ext(resource, SECRET)
    secret = str(secret_ext.get("valueString") or "") if secret_ext else None
    if secret == SECRET_MASK:  # what a read shows, sent back unchanged: keep the secret there is
        secret = None
    if secret is not None and (len(secret) < 16 or len(secret) > 255):
        raise InvalidResource(
            "The subscription secret must be 16 to 255 characters",
            expression="Subscription.extension('subscription-secret')",
        )
    return SubscriptionSpec(
        status=status,
        topic=topic,
        filters=filters,
        channel=ctype,
        endpoint=endpoint,
        payload=content,
        headers=tuple(headers),
        heartbeat_s=heartbeat,
        timeout_s=timeout or DEFAULT_TIMEOUT_S,
        max_count=max_count or DEFAULT_MAX_COUNT,
        secret=secret,
        end=resource.get("end"),
    )


def _endpoint(endpoint: Any, allow_http: bool) -> str:
    expr = "Subscription.channel.endpoint"
    if not isinstance(endpoint, str) or not endpoint:
        raise InvalidResource("A rest-hook subscription needs channel.endpoint", expression=expr)
    parts = urlsplit(endpoint)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidResource(
            f"Unsupported endpoint '{endpoint}': must be an absolute "
            + ("http(s)" if allow_http else "https (http only in development)")
            + " URL",
            expression=expr,
            issue_code="not-supported",
        )
    return endpoint


def _filters(criteria_element: Any, topic: Topic) -> dict[str, str]:
    filters: dict[str, str] = {}
    element = criteria_element if isinstance(criteria_element, Mapping) else {}
    for i, e in enumerate(element.get("extension") or []):
        if not isinstance(e, Mapping) or e.get("url") != FILTER_CRITERIA:
            continue
        expr = f"Subscription.criteria.extension[{i}]"
        text = str(e.get("valueString") or "")
        rtype, _, query = text.partition("?")
        if rtype and rtype != topic.resource:
            raise InvalidResource(
                f"Filter '{text}' is on {rtype}, but topic {topic.url} notifies about {topic.resource}",
                expression=expr,
                issue_code="not-supported",
            )
        for name, value in parse_qsl(query, keep_blank_values=True):
            declared = topic.filter(name.split(":")[0])
            if declared is None or ":" in name:
                allowed = ", ".join(f.name for f in topic.filters)
                raise InvalidResource(
                    f"Unsupported filter '{name}' on topic {topic.url} (its filters: {allowed})",
                    expression=expr,
                    issue_code="not-supported",
                )
            if not value or name in filters:
                raise InvalidResource(f"Filter '{name}' needs exactly one value", expression=expr)
            filters[name] = f"Patient/{value.removeprefix('Patient/')}" if name == "patient" else value
    return filters


def without_secret(resource: Mapping[str, Any]) -> tuple[list[Any], str | None]:
    """The resource's extensions with the secret masked (always present, so a read shows one is set), and the
    secret it carried (None when absent or the mask)."""
    secret: str | None = None
    kept: list[Any] = []
    for e in resource.get("extension") or []:
        if isinstance(e, Mapping) and e.get("url") == SECRET:
            value = e.get("valueString")
            if isinstance(value, str) and value and value != SECRET_MASK:
                secret = value
            continue
        kept.append(e)
    return [*kept, {"url": SECRET, "valueString": SECRET_MASK}], secret


def patient_of(filters: Mapping[str, str]) -> str | None:
    value = filters.get("patient")
    return value.removeprefix("Patient/") if value else None
