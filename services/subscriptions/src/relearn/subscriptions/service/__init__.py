"""Use cases of the subscriptions service: keeping each Subscription's state as it is written, numbering the
events that match it, and answering ``$status``, ``$events``, ``$resend`` and ``$get-ws-binding-token``."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session

from relearn.shared.auth import Permission, Principal, parse_scopes
from relearn.shared.fhir import (
    FhirStore,
    Forbidden,
    InvalidRequest,
    NotFound,
    ResourceChange,
    ResourceDefinition,
    as_utc,
)
from relearn.subscriptions import mapper, repository
from relearn.subscriptions.config import Settings
from relearn.subscriptions.domain.subscription import OWNER_PATIENT, SubscriptionSpec, parse, patient_of
from relearn.subscriptions.domain.topics import BY_URL, Trigger
from relearn.subscriptions.events import Incoming
from relearn.subscriptions.resources import WRITTEN_SECRET
from relearn.subscriptions.schemas import DeliveryOut
from relearn.subscriptions.service.focus import FocusReader
from relearn.subscriptions.tables import NotificationEvent, SubscriptionState, WsBindingToken

PRINCIPAL = "relearn.principal"  # session.info key: who is writing (set by the API)
SERVER_WRITE = "relearn.server-write"  # session.info key: the service itself updates a Subscription
_LIVE_CACHE = "relearn.live-subscriptions"  # session.info key: live subscriptions per topic, locked


def now() -> datetime:
    return datetime.now(UTC)


def may_see(owner_scope: str, owner_patient: str | None, focus_type: str, patient: str) -> bool:
    """Whether the subscriber's scopes cover ``focus_type`` of ``patient`` (checked at every send): a
    subscription is a standing search, so an unfiltered ``s`` scope (v1 ``read``) on the type. A filtered
    scope is not honoured here (notifications are not matched against scope filters)."""
    grants = [s for s in parse_scopes(owner_scope) if s.grants(focus_type, "s") and not s.filters]
    if any(s.context in ("user", "system") for s in grants):
        return True
    return bool(grants) and owner_patient == patient


def _in_compartment(resource: dict[str, Any], patient: str) -> bool:
    """Whether the focus resource is about ``patient`` (its subject, patient or for)."""
    for element in ("subject", "patient", "for"):
        ref = resource.get(element)
        if isinstance(ref, dict) and str(ref.get("reference") or "").endswith(f"Patient/{patient}"):
            return True
    return False


class Subscriptions:
    def __init__(
        self,
        store: FhirStore,
        rdef: ResourceDefinition,
        settings: Settings,
        focus_reader: FocusReader | None = None,
    ) -> None:
        self.store = store
        self.rdef = rdef
        self.settings = settings
        self.base_url = settings.fhir_base_url.rstrip("/")
        self.focus_reader = focus_reader or FocusReader(settings)
        # Set when events were recorded for delivery: the rest-hook sender in this process looks at once
        # instead of polling fast while nothing happens (idle means idle, issue 16).
        self.wake = threading.Event()

    # -- a Subscription is written (the store's write hook, in the writer's transaction) -------------
    def on_write(self, session: Session, change: ResourceChange) -> None:
        if change.resource_type != "Subscription" or session.info.get(SERVER_WRITE):
            return
        if change.kind == "delete" or change.resource is None:
            state = repository.get_state(session, change.id, lock=True)
            if state is not None:
                state.status = "off"
            return
        spec = parse(change.resource, allow_http=self.settings.environment != "production")
        secret = WRITTEN_SECRET.get()  # the write-only secret, taken out of the stored resource
        WRITTEN_SECRET.set(None)
        principal: Principal | None = session.info.get(PRINCIPAL)
        owner_scope, owner_patient = "system/*.read", None
        if principal is not None:
            owner_scope = principal.raw_scope
            if not principal.allows(spec.topic.resource, "s"):
                raise Forbidden(
                    f"Token scopes '{principal.raw_scope}' do not allow reading {spec.topic.resource}, "
                    f"the focus of topic {spec.topic.url} (a subscription is a standing search: 's')"
                )
            principal.require(spec.topic.resource, "s")
            owner_patient = principal.patient_restriction(spec.topic.resource, "s")
            if owner_patient is not None:
                self._check_patient_owner(change.resource, spec, owner_patient)
        state = repository.get_state(session, change.id, lock=True)
        if state is None:
            state = SubscriptionState(
                id=change.id,
                status="requested",
                topic=spec.topic.url,
                channel=spec.channel,
                payload=spec.payload,
                secret=secret or secrets.token_urlsafe(32),
            )
            self._apply(state, spec, owner_scope, owner_patient, secret)
            if spec.status == "off":
                state.status = "off"
            repository.add(session, state)
            return
        restart = (
            state.topic != spec.topic.url or state.endpoint != spec.endpoint or state.channel != spec.channel
        )
        self._apply(state, spec, owner_scope, owner_patient, secret)
        if spec.status == "off":
            state.status = "off"
        elif spec.status == "requested" or state.status == "off" or restart:
            # Asked to (re)start: handshake again, retry from a clean slate; the event numbers go on.
            state.status = "requested"
            state.handshake_done = False
            state.failures = 0
            state.first_failure_at = None
            state.next_attempt_at = None
        repository.save(session, state)

    def _apply(
        self,
        state: SubscriptionState,
        spec: SubscriptionSpec,
        owner_scope: str,
        owner_patient: str | None,
        secret: str | None,
    ) -> None:
        state.topic = spec.topic.url
        state.filters = json.dumps(dict(spec.filters), sort_keys=True)
        state.channel = spec.channel
        state.endpoint = spec.endpoint
        state.payload = spec.payload
        state.headers = json.dumps([list(h) for h in spec.headers])
        state.heartbeat_s = spec.heartbeat_s
        state.timeout_s = spec.timeout_s
        state.max_count = spec.max_count
        if secret:  # none given (or the mask sent back): the secret stays as it was
            state.secret = secret
        state.owner_scope = owner_scope
        state.owner_patient = owner_patient

    @staticmethod
    def _check_patient_owner(resource: dict[str, Any], spec: SubscriptionSpec, patient: str) -> None:
        if patient_of(spec.filters) != patient:
            raise Forbidden(
                f"A patient-scoped token may subscribe to its own data only: add the filter "
                f"'{spec.topic.resource}?patient=Patient/{patient}'",
                expression="Subscription.criteria.extension('backport-filter-criteria')",
            )
        owners = [
            e.get("valueReference", {}).get("reference")
            for e in resource.get("extension") or []
            if e.get("url") == OWNER_PATIENT
        ]
        if owners != [f"Patient/{patient}"]:
            raise Forbidden(
                f"A patient-scoped token's Subscription must carry the extension {OWNER_PATIENT} "
                f"(valueReference Patient/{patient})",
                expression="Subscription.extension",
            )

    # -- the notifier: number the events each subscription gets --------------------------------------
    def record(self, session: Session, incoming: Incoming) -> int:
        """Number ``incoming``'s triggers for every live subscription they match; returns how many.

        The live subscriptions of a topic are read (and row-locked) once per consumer transaction: a batch
        of events costs one query per topic, and the new log rows are written together at the commit. A
        replayed event never gets here (the consumer's processed-event table); the log's unique key
        (subscription, event, focus) backs that up.
        """
        recorded = 0
        cache: dict[str, list[SubscriptionState]] = session.info.setdefault(_LIVE_CACHE, {})
        seen: set[tuple[str, str]] = set()
        for trigger in incoming.triggers:
            states = cache.get(trigger.topic)
            if states is None:
                states = cache[trigger.topic] = list(repository.live_for_topic(session, trigger.topic))
            for state in states:
                if (state.id, trigger.focus) in seen or not self._wants(state, trigger):
                    continue
                seen.add((state.id, trigger.focus))
                state.events_since_start += 1
                repository.stage_event(
                    session,
                    NotificationEvent(
                        subscription_id=state.id,
                        number=state.events_since_start,
                        source_event=incoming.id,
                        event_type=incoming.type,
                        focus=trigger.focus,
                        focus_version=trigger.version,
                        patient=trigger.patient,
                        occurred_at=incoming.time,
                    ),
                )
                recorded += 1
        if recorded:
            self.wake.set()
        return recorded

    @staticmethod
    def _wants(state: SubscriptionState, trigger: Trigger) -> bool:
        filters: dict[str, str] = json.loads(state.filters)
        if not trigger.matches(filters):
            return False
        focus_type = trigger.focus.split("/", 1)[0]
        return may_see(state.owner_scope, state.owner_patient, focus_type, trigger.patient)

    # -- operations ------------------------------------------------------------------------------------
    def _owned(
        self, session: Session, principal: Principal, id: str, letter: Permission = "r"
    ) -> SubscriptionState:
        principal.require("Subscription", letter)
        restriction = principal.patient_restriction("Subscription", letter)
        state = repository.get_state(session, id)
        if state is None or (restriction is not None and state.owner_patient != restriction):
            raise NotFound(f"Subscription/{id} is not known")
        return state

    def event_views(
        self, state: SubscriptionState, events: Sequence[NotificationEvent]
    ) -> list[mapper.EventView]:
        out = []
        for e in events:
            visible = state.payload != "empty" and may_see(
                state.owner_scope, state.owner_patient, e.focus.split("/", 1)[0], e.patient
            )
            note = None
            if not visible and state.payload == "full-resource":
                note = f"the subscriber's scopes no longer allow reading {e.focus.split('/', 1)[0]}"
            out.append(
                mapper.EventView(
                    e.number, e.occurred_at, e.focus if visible else None, e.focus_version, note=note
                )
            )
        return out

    def notification(
        self, state: SubscriptionState, kind: str, events: Sequence[NotificationEvent]
    ) -> tuple[dict[str, Any], str | None]:
        """The notification Bundle of ``events``, and a reason to send it later instead (a focus that could
        not be read for a passing cause). Call outside a transaction: full-resource reads each focus, as it
        was at its event, through the FHIR base URL; the owner's scopes are checked again here."""
        views = self.event_views(state, events)
        retry: str | None = None
        if state.payload == "full-resource":
            views, retry = self._with_resources(state, views, events)
        status = self._status(state, kind, views)
        bundle = mapper.notification_bundle(
            status,
            subscription_id=state.id,
            at=now(),
            base_url=self.base_url,
            events=views if state.payload != "empty" else (),
        )
        return bundle, retry

    def _with_resources(
        self, state: SubscriptionState, views: list[mapper.EventView], events: Sequence[NotificationEvent]
    ) -> tuple[list[mapper.EventView], str | None]:
        out: list[mapper.EventView] = []
        retry: str | None = None
        for view, event in zip(views, events, strict=True):
            if view.focus is None:
                out.append(view)
                continue
            focus = self.focus_reader.read(view.focus, view.version, event.occurred_at)
            resource, note = focus.resource, focus.reason
            if focus.retry and retry is None:
                retry = f"{view.focus}: {focus.reason}"
            if (
                resource is not None
                and state.owner_patient
                and not _in_compartment(resource, state.owner_patient)
            ):
                resource, note = None, f"it is not in Patient/{state.owner_patient}'s compartment"
            version = view.version
            if resource is not None:
                version = version or str((resource.get("meta") or {}).get("versionId") or "") or None
            out.append(replace(view, resource=resource, note=note, version=version))
        return out, retry

    def status(self, session: Session, principal: Principal, id: str) -> dict[str, Any]:
        state = self._owned(session, principal, id)
        params = self.status_of(state, "query-status")
        return mapper.searchset([params], now())

    def status_of(
        self, state: SubscriptionState, kind: str, events: Sequence[NotificationEvent] = ()
    ) -> dict[str, Any]:
        return self._status(state, kind, self.event_views(state, events))

    def _status(
        self, state: SubscriptionState, kind: str, views: Sequence[mapper.EventView]
    ) -> dict[str, Any]:
        return mapper.status_parameters(
            base_url=self.base_url,
            subscription_id=state.id,
            topic=state.topic,
            status=state.status,
            kind=kind,
            events_since_start=state.events_since_start,
            events=views,
            error=state.last_error if state.status == "error" else None,
        )

    def events(
        self, session: Session, principal: Principal, id: str, since: int | None, until: int | None
    ) -> dict[str, Any]:
        """``$events``: the logged events ``since`` .. ``until`` (default: the last max-count)."""
        state = self._owned(session, principal, id)
        last = state.events_since_start
        hi = min(until, last) if until is not None else last
        lo = since if since is not None else max(1, hi - state.max_count + 1)
        if lo < 1 or (until is not None and until < lo):
            raise InvalidRequest("eventsSinceNumber must be 1 or more and not above eventsUntilNumber")
        rows = repository.events(session, id, lo, hi, 1000)
        views = self.event_views(state, rows)
        return mapper.notification_bundle(
            self._status(state, "query-event", views),
            subscription_id=id,
            at=now(),
            base_url=self.base_url,
            events=views if state.payload != "empty" else (),
        )

    def resend(self, session: Session, principal: Principal, id: str, since: int) -> dict[str, Any]:
        """``$resend``: deliver again every event from ``since`` on (duplicates carry their numbers)."""
        state = self._owned(session, principal, id, "u")
        if since < 1 or since > state.events_since_start:
            raise InvalidRequest(
                f"eventsSinceNumber must be between 1 and {state.events_since_start}",
                expression="eventsSinceNumber",
            )
        locked = repository.get_state(session, id, lock=True)
        assert locked is not None
        locked.acked_through = min(locked.acked_through, since - 1)
        locked.next_attempt_at = None
        repository.save(session, locked)
        return mapper.parameters(
            resending_from=str(since), events_since_subscription_start=str(state.events_since_start)
        )

    def rotate_secret(self, session: Session, principal: Principal, id: str) -> dict[str, Any]:
        """``$rotate-secret``: a new signing secret, returned this once (the Subscription shows it masked);
        for an owner who gave none on create (the server generated one nobody can read) or lost theirs."""
        principal.require("Subscription", "write")
        self._owned(session, principal, id)
        locked = repository.get_state(session, id, lock=True)
        assert locked is not None
        locked.secret = secrets.token_urlsafe(32)
        repository.save(session, locked)
        return mapper.parameters(secret=locked.secret)

    def ws_binding_token(self, session: Session, principal: Principal, id: str) -> dict[str, Any]:
        state = self._owned(session, principal, id)
        if state.channel != "websocket":
            raise InvalidRequest(f"Subscription/{id} is not a websocket subscription")
        token = secrets.token_urlsafe(32)
        expires = now() + timedelta(seconds=self.settings.ws_token_ttl_s)
        repository.purge_ws_tokens(session, now())
        repository.add(session, WsBindingToken(token=token, subscription_id=id, expires_at=expires))
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "token", "valueString": token},
                {"name": "expiration", "valueDateTime": expires.isoformat()},
                {"name": "subscription", "valueString": f"{self.base_url}/Subscription/{id}"},
                {"name": "websocket-url", "valueUrl": self.settings.websocket_url},
            ],
        }

    def delivery(self, session: Session, principal: Principal, id: str) -> DeliveryOut:
        state = self._owned(session, principal, id)

        def when(value: datetime | None) -> str | None:
            return as_utc(value).isoformat() if value else None

        return DeliveryOut(
            subscription=f"Subscription/{state.id}",
            status=state.status,
            channel=state.channel,
            eventsSinceSubscriptionStart=state.events_since_start,
            acknowledgedThrough=state.acked_through,
            pending=state.events_since_start - state.acked_through,
            handshakeDone=state.handshake_done,
            failures=state.failures,
            firstFailureAt=when(state.first_failure_at),
            nextAttemptAt=when(state.next_attempt_at),
            lastSentAt=when(state.last_sent_at),
            lastError=state.last_error,
        )

    # -- the service writes the status it reached into the stored Subscription -------------------------
    def set_resource_status(self, session: Session, state: SubscriptionState) -> None:
        stored = self.store.get(session, "Subscription", state.id)
        if stored is None or stored.deleted:
            return
        resource = stored.resource()
        wanted_error = state.last_error if state.status == "error" else None
        if resource.get("status") == state.status and resource.get("error") == wanted_error:
            return
        resource["status"] = state.status
        if wanted_error:
            resource["error"] = wanted_error
        else:
            resource.pop("error", None)
        session.info[SERVER_WRITE] = True
        try:
            self.store.update(session, self.rdef, state.id, resource)
        finally:
            session.info.pop(SERVER_WRITE, None)


def topics_known() -> list[str]:
    return sorted(BY_URL)
