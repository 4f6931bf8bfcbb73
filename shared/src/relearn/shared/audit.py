"""The audit trail: one AuditEvent (IHE BALP shaped) for every access to a service, allowed or not.

``AuditMiddleware`` (installed by ``create_service_app``) opens an :class:`AuditContext` per HTTP request and
WebSocket connection. The event reaches the outbox in one of two ways, exactly once:

- a request that used the request transaction (``SessionDep``) and raised nothing stages its event in that
  transaction, just before the commit (:func:`stage_in_request`): a write and its audit commit together, and
  a read costs one INSERT in a transaction it opens anyway;
- anything else (denied before the session was opened, failed and rolled back, routes without a session,
  WebSocket handshakes) is staged by the middleware once the answer is decided, in a small transaction of its
  own, after the response was sent (a WebSocket's when it is accepted or refused).

The events go to the audit topic (``relearn.audit.events``, type ``audit.recorded.v1``) as a compact record of
the access (:func:`audit_record`: who, what, when, the status, the patients touched); the audit service turns
each into an IHE BALP AuditEvent, stores it and serves ``AuditEvent``. The consumers of events never pass
through here, so consuming the audit topic produces no audit.
"""

from __future__ import annotations

import itertools
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
from sqlalchemy import event, func, insert, literal, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relearn.shared.audit_context import _CURRENT, AuditContext, current
from relearn.shared.events.outbox import _OUTBOX_TABLE as _OUTBOX
from relearn.shared.events.outbox import _STAGED as _OUTBOX_STAGED
from relearn.shared.events.outbox import EncodedEvent, stage_many
from relearn.shared.events.topics import AUDIT_EVENTS

logger = logging.getLogger(__name__)

AUDIT_EVENT_TYPE = "audit.recorded.v1"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# Never audited: probes, metrics, the CapabilityStatement and the API documents (no token, no data).
UNAUDITED_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/fhir/metadata", "/openapi.json", "/docs", "/redoc"}
)

# Every event id of this process: a random prefix and a counter (no syscall per request, unique across
# processes and restarts; a valid FHIR id, as the AuditEvent's id is the event's).
_ID_PREFIX = uuid.uuid4().hex
_ids = itertools.count(1)
_MAX_QUERY = 32 * 1024


def audit_record(
    ctx: AuditContext, status: int, service: str, base_url: str, recorded: datetime
) -> dict[str, Any]:
    """The compact record of one access: what ``audit.recorded.v1`` carries (the audit service turns it into
    the IHE BALP AuditEvent, so the request path only writes a few hundred bytes)."""
    principal = ctx.principal
    record: dict[str, Any] = {
        "recorded": recorded.isoformat(timespec="milliseconds"),
        "service": service,
        "site": base_url,
        "kind": ctx.kind,
        "method": ctx.method,
        "path": ctx.path[:2000],
        "status": status,
        "requestId": ctx.request_id[:200],
        "patients": sorted(ctx.patients)[:1000],
    }
    if ctx.query:
        record["query"] = ctx.query[:_MAX_QUERY].decode("latin-1")
    if ctx.client_host:
        record["clientHost"] = ctx.client_host
    if principal is not None:
        who: dict[str, Any] = {"clientId": principal.client_id, "subject": principal.subject}
        if principal.raw_scope:
            who["scope"] = principal.raw_scope[:2000]
        device = principal.device
        if device:
            who["device"] = device
        fhir_user = principal.fhir_user
        if fhir_user:
            who["fhirUser"] = fhir_user
        record["principal"] = who
    return record


def encoded(ctx: AuditContext, status: int, service: str, base_url: str) -> EncodedEvent:
    """The audit event as an outbox row's CloudEvent, built straight to bytes (the request path's cost)."""
    event_id = f"{_ID_PREFIX}-{next(_ids)}"
    now = datetime.now(UTC)
    data = json.dumps(audit_record(ctx, status, service, base_url, now), separators=(",", ":"))
    subject = min(ctx.patients) if ctx.patients else service
    envelope = (
        f'{{"specversion":"1.0","id":"{event_id}","source":"/relearn/{service}","type":"{AUDIT_EVENT_TYPE}",'
        f'"subject":{json.dumps(subject)},"time":"{now.isoformat().replace("+00:00", "Z")}",'
        f'"datacontenttype":"application/json","data":{data}}}'
    )
    return EncodedEvent(event_id, AUDIT_EVENT_TYPE, subject, envelope.encode())


class _Target:
    """Where the events of one app come from: its service name and FHIR base URL."""

    def __init__(self, service: str, base_url: str) -> None:
        self.service = service
        self.base_url = base_url


def stage_in_request(session: Session, scope: Scope) -> None:
    """Stage the current request's event, as a success, in its own transaction (called before commit)."""
    ctx = current()
    if ctx is None or ctx.staged or not ctx.service:
        return
    _named_patients(scope, ctx)
    row = encoded(ctx, 200, ctx.service, ctx.base_url)
    if ctx.method in _READS:
        _stage_relaxed(session, row)
    else:
        stage_many(session, [row], AUDIT_EVENTS)
    ctx.staged = True


# Methods that change nothing: their transaction writes only the audit row.
_READS = frozenset({"GET", "HEAD"})


_COLUMNS = ("event_id", "topic", "key", "type", "payload", "created_at", "attempts")


def _stage_relaxed(session: Session, row: EncodedEvent) -> None:
    """Stage an audit row in a transaction that writes nothing else (a read, a denial, a failure), and let it
    commit without waiting for the WAL flush (PostgreSQL ``synchronous_commit = off`` for this transaction,
    set by the same INSERT statement: no extra round trip). A read stays as cheap as it was (a read-only
    commit flushes nothing). What it risks: a PostgreSQL crash (not a service or broker crash) in the few
    hundred milliseconds after such a commit may lose those audit rows; writes keep full durability."""
    if session.get_bind().dialect.name != "postgresql":
        stage_many(session, [row], AUDIT_EVENTS)
        return
    relax = select(func.set_config("synchronous_commit", "off", True).label("relaxed")).subquery()
    c = _OUTBOX.c
    values = select(
        literal(row.id, c.event_id.type),
        literal(AUDIT_EVENTS, c.topic.type),
        literal(row.subject, c.key.type),
        literal(row.type, c.type.type),
        literal(row.payload, c.payload.type),
        literal(datetime.now(UTC), c.created_at.type),
        literal(0, c.attempts.type),
    ).select_from(relax)
    session.execute(insert(_OUTBOX).from_select(list(_COLUMNS), values))
    session.info[_OUTBOX_STAGED] = True  # wakes the relay after the commit, as stage() does


def audit_in(session: Session) -> None:
    """Stage the current request's audit event in ``session``, the transaction that does its work, when the
    request does not use ``SessionDep`` (a hot path with its own transaction: ingest). Call it last in that
    transaction; it counts as a success (an error raised after it rolls the event back, and the middleware
    audits the failure). No-op outside a request or once staged."""
    ctx = current()
    if ctx is None or ctx.staged or not ctx.service or session.info.get(_IN_SESSION) is ctx:
        return
    stage_many(session, [encoded(ctx, 200, ctx.service, ctx.base_url)], AUDIT_EVENTS)
    session.info[_IN_SESSION] = ctx  # staged for good when this transaction commits


_IN_SESSION = "relearn.audit.staged"


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    ctx = session.info.pop(_IN_SESSION, None)
    if ctx is not None:
        ctx.staged = True


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_IN_SESSION, None)


def unstage() -> None:
    """The request transaction did not commit: its audit event is gone, the middleware stages another."""
    ctx = current()
    if ctx is not None:
        ctx.staged = False


def _stage_alone(engine: Engine, events: Iterable[EncodedEvent]) -> None:
    with Session(engine) as session:
        for row in events:
            _stage_relaxed(session, row)  # only audit rows (denials, failures): see _stage_relaxed
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
        client = scope.get("client")
        ctx = AuditContext(
            kind=kind,
            method="WS" if kind == "websocket" else scope.get("method", "GET"),
            path=path,
            query=scope.get("query_string", b""),
            client_host=client[0] if client else None,
            service=self.target.service,
            base_url=self.target.base_url,
            request_id=str(structlog.contextvars.get_contextvars().get("request_id") or uuid.uuid4().hex),
        )
        for name, value in scope.get("headers", ()):
            if name == b"x-provenance" and ctx.provenance is None:
                ctx.provenance = value
            elif name == b"x-request-id" and kind == "websocket" and value:
                # The request id middleware binds HTTP requests only; a socket keeps the one it was sent.
                ctx.request_id = value.decode("latin-1")[:200]
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
