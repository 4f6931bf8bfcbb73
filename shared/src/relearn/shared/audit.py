"""The audit trail: one AuditEvent (IHE BALP shaped) for every access to a service, allowed or not.

``AuditMiddleware`` (installed by ``create_service_app``) opens an :class:`AuditContext` per HTTP request and
WebSocket connection. The event reaches the outbox in one of two ways, exactly once:

- a request that used the request transaction (``SessionDep``) and raised nothing stages its event in that
  transaction, just before the commit (:func:`stage_in_request`): a write and its audit commit together, and
  a read costs one INSERT in a transaction it opens anyway;
- anything else (denied before the session was opened, failed and rolled back, routes without a session,
  WebSocket handshakes) is staged by the middleware once the answer is decided, in a small transaction of its
  own, after the response was sent (a WebSocket's when it is accepted or refused).

The events go to the audit topic (``relearn.audit.events``, type ``audit.recorded.v1``); the audit service
stores them and serves ``AuditEvent``. The consumers of events never pass through here, so consuming the
audit topic produces no audit.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import structlog
from anyio import to_thread
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relearn.shared.audit_context import _CURRENT, AuditContext, current
from relearn.shared.events.outbox import EncodedEvent, stage_many
from relearn.shared.events.topics import AUDIT_EVENTS
from relearn.shared.fhir.canonical import identifier_system

logger = logging.getLogger(__name__)

AUDIT_EVENT_TYPE = "audit.recorded.v1"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Never audited: probes, metrics, the CapabilityStatement and the API documents (no token, no data).
UNAUDITED_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/fhir/metadata", "/openapi.json", "/docs", "/redoc"}
)

_EVENT_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP = "https://profiles.ihe.net/ITI/BALP"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CLIENT_ID_SYSTEM = identifier_system("client-id")
SUBJECT_SYSTEM = identifier_system("token-subject")
REQUEST_ID_SYSTEM = identifier_system("request-id")

# The BALP profile of a successful interaction, by action, with and without a patient.
_PROFILES = {
    "C": ("Create", "PatientCreate"),
    "R": ("Read", "PatientRead"),
    "U": ("Update", "PatientUpdate"),
    "D": ("Delete", "PatientDelete"),
    "E": ("Query", "PatientQuery"),
}


def interaction(kind: str, method: str, path: str, has_query: bool) -> tuple[str, str]:
    """The restful-interaction code and the BALP action (C/R/U/D/E) of one access."""
    if kind == "websocket":
        return "operation", "E"
    if path == "/fhir" or path.startswith("/fhir/"):
        segs = [s for s in path[len("/fhir") :].split("/") if s]
        return _fhir_interaction(method, segs)
    if method == "GET":
        return ("search-type", "E") if has_query else ("read", "R")
    return {
        "POST": ("create", "C"),
        "PUT": ("update", "U"),
        "PATCH": ("patch", "U"),
        "DELETE": ("delete", "D"),
    }.get(method, ("operation", "E"))


def _fhir_interaction(method: str, segs: list[str]) -> tuple[str, str]:
    if any(s.startswith("$") for s in segs):
        return "operation", "E"
    if not segs:
        return ("transaction", "E") if method == "POST" else ("search-system", "E")
    if len(segs) == 1:
        if segs[0] == "_history":
            return "history-system", "R"
        return {
            "POST": ("create", "C"),
            "PUT": ("update", "U"),
            "PATCH": ("patch", "U"),
            "DELETE": ("delete", "D"),
        }.get(method, ("search-type", "E"))
    if segs[1] == "_search":
        return "search-type", "E"
    if segs[1] == "_history":
        return "history-type", "R"
    if len(segs) == 2:
        return {
            "PUT": ("update", "U"),
            "PATCH": ("patch", "U"),
            "DELETE": ("delete", "D"),
        }.get(method, ("read", "R"))
    if segs[2] == "_history":
        return ("vread", "R") if len(segs) >= 4 else ("history-instance", "R")
    return "operation", "E"


def outcome_code(status: int) -> str:
    """BALP/FHIR AuditEvent.outcome: 0 success, 4 minor failure (4xx, denied ones too), 8 serious (5xx)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def _resource_entity(path: str) -> dict[str, Any] | None:
    """The domain resource an instance-level FHIR access is about (``Type/id`` or ``Type/id/_history/v``)."""
    if not path.startswith("/fhir/"):
        return None
    segs = [s for s in path[len("/fhir/") :].split("/") if s]
    if len(segs) < 2 or segs[1].startswith(("_", "$")):
        return None
    ref = f"{segs[0]}/{segs[1]}"
    if len(segs) >= 4 and segs[2] == "_history":
        ref += f"/_history/{segs[3]}"
    return {
        "what": {"reference": ref},
        "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def _agents(ctx: AuditContext, service: str, base_url: str) -> list[dict[str, Any]]:
    principal = ctx.principal
    network = {"address": ctx.client_host, "type": "2"} if ctx.client_host else None
    agents: list[dict[str, Any]] = []
    if principal is None:
        # No verified token: the requestor is known only by its address.
        unknown: dict[str, Any] = {
            "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": "unauthenticated client"},
            "requestor": True,
        }
        if network:
            unknown["network"] = network
        agents.append(unknown)
    else:
        client: dict[str, Any] = {
            "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": principal.client_id}},
            "requestor": False,
        }
        if network:
            client["network"] = network
        agents.append(client)
        device = getattr(principal, "device", None)
        if device:
            agents.append(
                {
                    "type": {"coding": [{"system": _PARTICIPATION, "code": "DEV", "display": "device"}]},
                    "who": {"reference": f"Device/{device}"},
                    "requestor": True,
                }
            )
        else:
            fhir_user = getattr(principal, "fhir_user", None)
            who: dict[str, Any] = (
                {"reference": fhir_user}
                if fhir_user
                else {"identifier": {"system": SUBJECT_SYSTEM, "value": principal.subject}}
            )
            agents.append(
                {
                    "type": {
                        "coding": [
                            {
                                "system": f"{_BALP}/CodeSystem/UserAgentTypes",
                                "code": "UserOauthAgent",
                                "display": "User OAuth Agent participant",
                            }
                        ]
                    },
                    "who": who,
                    "requestor": True,
                    **({"policy": [principal.raw_scope[:1000]]} if principal.raw_scope else {}),
                }
            )
    agents.append(
        {
            "type": {"coding": [{"system": _DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"display": f"relearn-{service}"},
            "requestor": False,
            "network": {"address": base_url, "type": "5"},
        }
    )
    return agents


def audit_event(
    ctx: AuditContext, status: int, service: str, base_url: str, *, recorded: datetime | None = None
) -> dict[str, Any]:
    """The AuditEvent of one access (FHIR R4 JSON), after IHE BALP's RESTful patterns."""
    code, action = interaction(ctx.kind, ctx.method, ctx.path, bool(ctx.query))
    outcome = outcome_code(status)
    patients = sorted(ctx.patients)
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"Patient/{p}"},
            "type": {"system": _ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"},
        }
        for p in patients
    ]
    resource = _resource_entity(ctx.path)
    if resource is not None:
        entities.append(resource)
    if ctx.query and action == "E":
        entities.append(
            {
                "type": {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": _OBJECT_ROLE, "code": "24", "display": "Query"},
                "description": ctx.path[:1000],
                "query": base64.b64encode(ctx.query[:32768]).decode("ascii"),
            }
        )
    entities.append(
        {
            "what": {"identifier": {"system": REQUEST_ID_SYSTEM, "value": ctx.request_id[:200]}},
            "type": {"system": f"{_BALP}/CodeSystem/BasicAuditEntityType", "code": "XrequestId"},
            "description": f"{ctx.method} {ctx.path[:1000]}",
        }
    )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _EVENT_TYPE,
        "subtype": [{"system": _INTERACTION, "code": code}],
        "action": action,
        "recorded": (recorded or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "outcome": outcome,
        **({"outcomeDesc": f"HTTP {status}"} if status >= 400 else {}),
        "agent": _agents(ctx, service, base_url),
        "source": {
            "site": base_url,
            "observer": {"display": f"relearn-{service}"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": entities,
    }
    if outcome == "0":
        basic, with_patient = _PROFILES[action]
        profile = with_patient if patients else basic
        event["meta"] = {"profile": [f"{_BALP}/StructureDefinition/IHE.BasicAudit.{profile}"]}
    return event


def encoded(ctx: AuditContext, status: int, service: str, base_url: str) -> EncodedEvent:
    """The audit event as an outbox row's CloudEvent, built straight to bytes (the request path's cost)."""
    event_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    resource = {"id": event_id, **audit_event(ctx, status, service, base_url, recorded=now)}
    subject = min(ctx.patients) if ctx.patients else service
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "source": f"relearn/{service}",
        "type": AUDIT_EVENT_TYPE,
        "subject": subject,
        "time": now.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": resource,
    }
    return EncodedEvent(event_id, AUDIT_EVENT_TYPE, subject, json.dumps(envelope).encode())


class _Target:
    """Where the events of one app are staged (filled in by ``create_service_app``)."""

    def __init__(self, service: str, base_url: str) -> None:
        self.service = service
        self.base_url = base_url


_TARGET_KEY = "relearn.audit.target"


def stage_in_request(session: Session, scope: Scope) -> None:
    """Stage the current request's event, as a success, in its own transaction (called before commit)."""
    ctx = current()
    app = scope.get("app")
    target: _Target | None = getattr(getattr(app, "state", None), "audit_target", None)
    if ctx is None or ctx.staged or target is None:
        return
    _named_patients(scope, ctx)
    stage_many(session, [encoded(ctx, 200, target.service, target.base_url)], AUDIT_EVENTS)
    ctx.staged = True


def unstage() -> None:
    """The request transaction did not commit: its audit event is gone, the middleware stages another."""
    ctx = current()
    if ctx is not None:
        ctx.staged = False


def _stage_alone(engine: Engine, events: Iterable[EncodedEvent]) -> None:
    with Session(engine) as session:
        stage_many(session, list(events), AUDIT_EVENTS)
        session.commit()


class AuditMiddleware:
    """Pure ASGI: opens the audit context of each access and stages its event when nothing else did."""

    def __init__(self, app: ASGIApp, *, service: str, base_url: str) -> None:
        self.app = app
        self.target = _Target(service, base_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path: str = scope.get("path", "")
        if kind not in ("http", "websocket") or path in UNAUDITED_PATHS or path.startswith("/docs"):
            await self.app(scope, receive, send)
            return
        app = scope.get("app")
        if app is not None:
            app.state.audit_target = self.target
        client = scope.get("client")
        ctx = AuditContext(
            kind=kind,
            method="WS" if kind == "websocket" else scope.get("method", "GET"),
            path=path,
            query=scope.get("query_string", b""),
            client_host=client[0] if client else None,
            request_id=str(structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex),
        )
        for name, value in scope.get("headers", ()):
            if name == b"x-provenance":
                ctx.provenance = value
                break
        token = _CURRENT.set(ctx)

        async def watch(message: Message) -> None:
            mtype = message["type"]
            if mtype == "http.response.start":
                ctx.status = int(message["status"])
            elif kind == "websocket" and not ctx.staged:
                # A socket is decided by what the server does first after the handshake: refused (closed
                # 44xx, with or without accepting first: `refuse`), or served (its first message, a normal
                # close). Audited then, not when the connection ends, which may be hours later.
                if mtype == "websocket.accept":
                    ctx.status = 101
                elif mtype == "websocket.http.response.start":
                    ctx.status = int(message.get("status", 403))
                    await self._decide(scope, ctx)
                elif mtype == "websocket.close":
                    ctx.status = _ws_status(message)
                    await self._decide(scope, ctx)
                elif mtype == "websocket.send":
                    ctx.status = 101
                    await self._decide(scope, ctx)
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if ctx.status is None:
                ctx.status = 500
            raise
        finally:
            _CURRENT.reset(token)
            if not ctx.staged:
                _named_patients(scope, ctx)
                await self._stage(scope, ctx)

    async def _decide(self, scope: Scope, ctx: AuditContext) -> None:
        _named_patients(scope, ctx)
        await self._stage(scope, ctx)

    async def _stage(self, scope: Scope, ctx: AuditContext) -> None:
        if ctx.staged:
            return
        app = scope.get("app")
        engine: Engine | None = getattr(getattr(app, "state", None), "engine", None)
        if engine is None:
            return
        ctx.staged = True
        status = ctx.status if ctx.status is not None else 500
        event = encoded(ctx, status, self.target.service, self.target.base_url)
        try:
            await to_thread.run_sync(_stage_alone, engine, [event])
        except Exception:
            # The access was answered; losing its audit is logged loudly, never turned into an error.
            logger.exception("could not stage the audit event", extra={"path": ctx.path, "status": status})


_PATIENT_PARAMS = frozenset({"patient", "patient_id", "patientId"})
_MAX_NAMED = 20


def _named_patients(scope: Scope, ctx: AuditContext) -> None:
    """The patients a request names (``patient`` in its query or path, ``subject=Patient/..``), for an access
    that ended before the store or the route could say whom it touched: a denied or failed one is still about
    them (BALP: the patient the access was about). Plain ids only, at most a few."""
    names: list[str] = []
    for key, value in (scope.get("path_params") or {}).items():
        if key in _PATIENT_PARAMS and isinstance(value, str):
            names.append(value)
    if ctx.query:
        for key, value in parse_qsl(ctx.query.decode("latin-1"), keep_blank_values=False):
            base = key.split(":", 1)[0]
            if base == "patient" or (base == "subject" and value.startswith("Patient/")):
                names.extend(value.split(","))
    for name in names[:_MAX_NAMED]:
        pid = name.strip().removeprefix("Patient/")
        if _ID.match(pid):
            ctx.patients.add(pid)


def _ws_status(message: Message) -> int:
    """The status of a WebSocket the server closed first: its close code 4000 + HTTP status (``refuse``),
    101 for a normal close (1000, 1001), 500 for another."""
    code = int(message.get("code", 1000))
    if 4400 <= code < 4600:
        return code - 4000
    return 101 if code in (1000, 1001) else 500
