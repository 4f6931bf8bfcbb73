"""The first thing every request meets (services and the front door): malformed or oversized input is refused
with a 4xx OperationOutcome before any route, parser or proxy sees it.

:class:`RequestGuard` is pure ASGI. For HTTP requests it refuses, in this order:

- a path with ``%00`` (or a NUL), an encoded ``/`` or ``\\`` (``%2F``, ``%5C``) or a ``.``/``..`` segment: 400
  (no id or route contains them; decoded, they would reach another route);
- a query string longer than ``max_query_bytes``: 414;
- an ``Authorization`` header that is not visible ASCII, or a ``Bearer`` scheme with no token: 401;
- a body on POST/PUT/PATCH without ``Content-Type``: 415;
- a body over the limit for its path (``Content-Length`` or counted while reading): 413;
- a JSON body nested deeper than ``max_json_depth``: 400.

The body is read here (bounded by the limit) and replayed to the app: nothing downstream gets more.
WebSocket and lifespan scopes pass through (WebSockets bound their messages themselves).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relearn.shared.fhir.errors import Issue, operation_outcome

__all__ = ["GuardLimits", "RequestGuard", "json_depth"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_BAD_ESCAPES = re.compile(rb"%(?:00|2f|5c)", re.IGNORECASE)
_VISIBLE_ASCII = re.compile(rb"^[\x20-\x7e]*$")
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
# Everything but brackets is deleted before the depth count.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _open in b"[{":
    _STEP[_open] = 1
for _close in b"]}":
    _STEP[_close] = -1


@dataclass(frozen=True)
class GuardLimits:
    """What :class:`RequestGuard` allows; services build it from their settings (see ``docs/api.md``)."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_json_depth: int = 64
    max_query_bytes: int = 32 * 1024
    # Path prefix -> body limit, for routes that take more (ingest): the longest matching prefix wins.
    body_limits: Sequence[tuple[str, int]] = field(default_factory=tuple)

    def body_limit(self, path: str) -> int:
        best, limit = -1, self.max_body_bytes
        for prefix, value in self.body_limits:
            if path.startswith(prefix) and len(prefix) > best:
                best, limit = len(prefix), value
        return limit


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays/objects in JSON text (strings skipped); no recursion, no parse."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(accumulate(map(_STEP.__getitem__, brackets)))


class _Refused(Exception):
    def __init__(self, status: int, code: str, diagnostics: str, expression: str, **headers: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.outcome = operation_outcome([Issue(code, diagnostics, "error", [expression])])
        self.headers = headers


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


def _check_path(scope: Scope) -> None:
    raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
    path: str = scope["path"]
    if _BAD_ESCAPES.search(raw) or "\x00" in path or "\\" in path:
        raise _Refused(
            400, "invalid", "The path contains %00, an encoded '/' or '\\', which no route takes", "path"
        )
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _Refused(400, "invalid", "The path contains a '.' or '..' segment", "path")


def _check_query(scope: Scope) -> None:
    """No NUL in a query parameter: PostgreSQL text cannot hold one, and no identifier has one."""
    raw: bytes = scope.get("query_string", b"")
    if b"%00" not in raw and b"\x00" not in raw:  # the common case costs two byte searches
        return
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    names = [name.replace("\x00", "") or "query" for name, value in pairs if "\x00" in name + value]
    raise _Refused(
        400, "invalid", "A query parameter contains a NUL character (%00)", *(names[:1] or ["query"])
    )


def _check_authorization(scope: Scope) -> None:
    value = _header(scope, b"authorization")
    if value is None:
        return
    challenge = 'Bearer realm="relearn", error="invalid_request"'
    if not _VISIBLE_ASCII.match(value):
        raise _Refused(
            401,
            "login",
            "The Authorization header must be visible ASCII (Bearer <token>)",
            "Authorization",
            **{"WWW-Authenticate": challenge},
        )
    scheme, _, token = value.decode("ascii").strip().partition(" ")
    if scheme.lower() == "bearer" and not token.strip():
        raise _Refused(
            401,
            "login",
            "The Authorization header has no bearer token",
            "Authorization",
            **{"WWW-Authenticate": challenge},
        )


class RequestGuard:
    """Pure ASGI middleware refusing malformed or oversized HTTP requests (module docstring)."""

    def __init__(self, app: ASGIApp, limits: GuardLimits | None = None) -> None:
        self.app = app
        self.limits = limits or GuardLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            _check_path(scope)
            if len(scope.get("query_string", b"")) > self.limits.max_query_bytes:
                raise _Refused(
                    414,
                    "too-long",
                    f"The query string is longer than {self.limits.max_query_bytes} bytes (max_query_bytes)",
                    "query",
                )
            _check_query(scope)
            _check_authorization(scope)
            replay = await self._read_body(scope, receive)
        except _Refused as refused:
            await self._refuse(send, refused)
            return
        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> Receive:
        method = scope["method"]
        length_header = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        limit = self.limits.body_limit(scope["path"])
        if length_header is not None:
            try:
                declared = int(length_header)
            except ValueError:
                raise _Refused(400, "invalid", "Content-Length is not a number", "Content-Length") from None
            if declared > limit:
                raise self._too_large(limit)
        has_body = chunked or (length_header is not None and length_header.strip() not in (b"", b"0"))
        content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
        if method in _BODY_METHODS and has_body and not content_type:
            raise _Refused(
                415,
                "not-supported",
                "A request with a body needs a Content-Type (application/fhir+json, application/json ...)",
                "Content-Type",
            )
        if not has_body:
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "incomplete", "The client went away before sending the body", "body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise self._too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if content_type.endswith(b"json") and body:
            depth = json_depth(body)
            if depth > self.limits.max_json_depth:
                raise _Refused(
                    400,
                    "too-costly",
                    f"The JSON body is nested {depth} deep; at most {self.limits.max_json_depth} "
                    "(max_json_depth)",
                    "body",
                )
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        return replay

    def _too_large(self, limit: int) -> _Refused:
        return _Refused(
            413, "too-long", f"The request body is larger than {limit} bytes (max_body_bytes)", "body"
        )

    @staticmethod
    async def _refuse(send: Send, refused: _Refused) -> None:
        body = json.dumps(refused.outcome).encode()
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/fhir+json"),
            (b"content-length", str(len(body)).encode()),
            # The body was not (fully) read: the connection cannot be reused for another request.
            (b"connection", b"close"),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in refused.headers.items()]
        await send({"type": "http.response.start", "status": refused.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def settings_limits(settings: Any, body_limits: Sequence[tuple[str, int]] = ()) -> GuardLimits:
    """The limits a settings object with ``max_body_bytes``, ``max_json_depth``, ``max_query_bytes`` gives."""
    return GuardLimits(
        max_body_bytes=settings.max_body_bytes,
        max_json_depth=settings.max_json_depth,
        max_query_bytes=settings.max_query_bytes,
        body_limits=tuple(body_limits),
    )
