"""``Idempotency-Key`` on POST: a client's retry replays the first answer instead of writing twice.

A client that cannot tell whether its POST went through (a timeout, a lost connection) sends it
again with the same ``Idempotency-Key`` header. The first answer (status, headers, body) is stored
in the request's own database transaction, with the write it describes: both are committed or
neither is. Requests with one key take turns (:func:`relearn.shared.db.lock_for_write`): a retry
sent while the first request is still running waits for its commit and replays its answer.

- same key, same request (method, path, query, body): the stored answer, with
  ``Idempotent-Replayed: true``;
- same key, another request: 422 naming the header;
- keys belong to the caller (the token's client, subject, patient and device), and expire after
  ``idempotency_retention_s`` (then the key may be used again).

Only 2xx answers are stored: a request that failed wrote nothing (its transaction rolled back),
so sending it again is safe and runs it again. A route that does not use the request session
(``SessionDep``) writes in its own transactions; for those the answer is stored after the route
returns, which replays retries but cannot make two concurrent first attempts atomic.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, request_response
from sqlalchemy import Column, DateTime, Index, Integer, LargeBinary, String, Text, delete
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute

from relearn.shared.db import lock_for_write, transaction
from relearn.shared.fhir.errors import FhirError, InvalidRequest, UnprocessableEntity

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 255
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, like a token
# What a replayed answer carries besides its body: what the client acts on.
_KEPT_HEADERS = ("content-type", "location", "content-location", "etag", "last-modified")

_Endpoint = Callable[[Request], Awaitable[Response]]


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created", "created_at"),)

    # A hash of who sent the key: two clients never share one.
    owner: str = Field(sa_column=Column(String(64), primary_key=True))
    key: str = Field(sa_column=Column(String(MAX_KEY), primary_key=True))
    request_hash: str = Field(sa_column=Column(String(64), nullable=False))
    status: int = Field(sa_column=Column(Integer, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


@dataclass
class IdempotentRequest:
    """The key a request carries; ``session`` is set once the request session took it."""

    owner: str
    key: str
    digest: str
    retention: timedelta
    session: Session | None = None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: str
    body: bytes


class _Replay(Exception):
    """The stored answer, raised out of the request session (which then rolls back)."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__("replay")
        self.answer = _Answer(record.status, record.headers, bytes(record.body))


def claim(session: Session, request: Request) -> None:
    """Called by the request session before the route runs: replay, refuse, or let it run."""
    ctx: IdempotentRequest | None = getattr(request.state, "idempotency", None)
    if ctx is None:
        return
    _check_stored(session, ctx)
    ctx.session = session


def _check_stored(session: Session, ctx: IdempotentRequest) -> None:
    lock_for_write(session, f"idempotency:{ctx.owner}:{ctx.key}")
    record = session.get(IdempotencyRecord, (ctx.owner, ctx.key))
    if record is None:
        return
    if _aware(record.created_at) < datetime.now(UTC) - ctx.retention:
        session.delete(record)  # expired: the key starts afresh
        session.flush()
        return
    if record.request_hash != ctx.digest:
        raise UnprocessableEntity(
            f"{HEADER} '{ctx.key}' was already used with a different request (method, path, query or "
            "body); send a new key for a new request",
            expression=HEADER,
        )
    raise _Replay(record)


def _store(session: Session, ctx: IdempotentRequest, response: Response) -> None:
    now = datetime.now(UTC)
    # Expired keys go with the next write, so the table stays as small as the retention.
    session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - ctx.retention))  # type: ignore[arg-type]
    headers = {k: v for k, v in response.headers.items() if k.lower() in _KEPT_HEADERS}
    session.add(
        IdempotencyRecord(
            owner=ctx.owner,
            key=ctx.key,
            request_hash=ctx.digest,
            status=response.status_code,
            headers=json.dumps(headers),
            body=bytes(response.body),
            created_at=now,
        )
    )
    session.flush()


def _replayed(answer: _Answer) -> Response:
    headers = dict(json.loads(answer.headers))
    headers[REPLAYED] = "true"
    return Response(content=answer.body, status_code=answer.status, headers=headers)


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _owner(request: Request) -> str | None:
    """Who sends the key (None without a valid token: the route answers 401 itself)."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    verifier = getattr(request.app.state, "token_verifier", None)
    if scheme.lower() != "bearer" or not token.strip() or verifier is None:
        return None
    try:
        p = verifier.verify(token.strip())
    except FhirError:
        return None
    who = "\x1f".join((p.client_id, p.subject, p.patient or "", p.device or ""))
    return hashlib.sha256(who.encode()).hexdigest()


def _digest(request: Request, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        h.update(part.encode())
        h.update(b"\x00")
    h.update(body)
    return h.hexdigest()


# The dependencies that open the request's session (relearn.shared.deps.get_session registers itself:
# deps builds on this module, so this module must not import it).
_REQUEST_SESSION: set[Callable[..., object]] = set()


def request_session_dependency(dependency: Callable[..., object]) -> None:
    """Declare ``dependency`` as the one that opens the request's session (called by ``deps``)."""
    _REQUEST_SESSION.add(dependency)


def _uses_request_session(dependant: Dependant) -> bool:
    return any(d.call in _REQUEST_SESSION or _uses_request_session(d) for d in dependant.dependencies)


def idempotent(
    handler: _Endpoint, *, engine_of: Callable[[Request], Engine], in_session: bool, retention: timedelta
) -> _Endpoint:
    """Wrap a POST route's handler (it runs inside FastAPI's function scope, before the commit)."""

    async def wrapped(request: Request) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return await handler(request)
        if not _KEY.match(key):
            raise InvalidRequest(
                f"{HEADER} must be 1-{MAX_KEY} visible ASCII characters (a UUID is a good key)",
                expression=HEADER,
            )
        owner = _owner(request)
        if owner is None:
            return await handler(request)
        ctx = IdempotentRequest(owner, key, _digest(request, await request.body()), retention)
        request.state.idempotency = ctx
        if not in_session:
            return await _outside_session(handler, request, ctx, engine_of(request))
        try:
            response = await handler(request)
        except _Replay as replay:
            return _replayed(replay.answer)
        if ctx.session is not None and 200 <= response.status_code < 300 and hasattr(response, "body"):
            await run_in_threadpool(_store, ctx.session, ctx, response)
        return response

    return wrapped


async def _outside_session(
    handler: _Endpoint, request: Request, ctx: IdempotentRequest, engine: Engine
) -> Response:
    def check() -> _Answer | None:
        try:
            with transaction(engine) as session:
                _check_stored(session, ctx)
        except _Replay as replay:
            return replay.answer
        return None

    def store(response: Response) -> None:
        try:
            with transaction(engine) as session:
                _check_stored(session, ctx)
                _store(session, ctx, response)
        except _Replay:
            pass  # a concurrent first attempt stored its answer

    stored = await run_in_threadpool(check)
    if stored is not None:
        return _replayed(stored)
    response = await handler(request)
    if 200 <= response.status_code < 300 and hasattr(response, "body"):
        await run_in_threadpool(store, response)
    return response


def install(app: FastAPI, retention: timedelta) -> None:
    """Make every POST route of ``app`` honour ``Idempotency-Key`` (call after including the routers).

    FastAPI builds a route's handler with ``get_route_handler`` (for an included router, once per
    inclusion, on first use): each POST route's factory is wrapped, so every handler it builds is.
    """

    def engine_of(request: Request) -> Engine:
        engine: Engine = request.app.state.engine
        return engine

    for route in _api_routes(app.router.routes):
        if "POST" not in (route.methods or ()) or getattr(route, _WRAPPED, False):
            continue
        build = route.get_route_handler
        in_session = _uses_request_session(route.dependant)

        def wrapped_build(build: Callable[[], _Endpoint] = build, in_session: bool = in_session) -> _Endpoint:
            return idempotent(build(), engine_of=engine_of, in_session=in_session, retention=retention)

        setattr(route, "get_route_handler", wrapped_build)  # noqa: B010  (an instance override)
        setattr(route, _WRAPPED, True)
        route.app = request_response(wrapped_build())


_WRAPPED = "_relearn_idempotent"


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)  # a router included in another
        if inner is not None:
            yield from _api_routes(inner.routes)
