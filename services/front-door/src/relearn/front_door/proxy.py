"""Forward a request to the service that owns it: a FHIR resource type, or a REST path (``forward_rest``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote
from weakref import WeakKeyDictionary

import httpx
from fastapi import Request, Response

from relearn.front_door.upstream import UpstreamClient
from relearn.shared.fhir import FhirError
from relearn.shared.service import TIMEOUT_HEADER

# What a client is told to wait when a service is unreachable or slow (starting, restarting).
RETRY_AFTER_S = 5
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def unavailable(message: str, *, status_code: int = 503) -> FhirError:
    """503 (transient) or 504 (timeout) with ``Retry-After``: the service is starting, restarting or slow."""
    code = "timeout" if status_code == 504 else "transient"
    return FhirError(
        message, status_code=status_code, issue_code=code, headers={"Retry-After": str(RETRY_AFTER_S)}
    )


def may_resend(
    method: str,
    headers: httpx.Headers | dict[str, str] | list[tuple[bytes, bytes]],
    exc: httpx.HTTPError,
) -> bool:
    """Whether a request that failed with ``exc`` before any answer may be sent once more.

    A connection error means nothing was sent. "Server disconnected" on a pooled keep-alive connection is
    usually the service having closed it just before (after an error, on restart, or an idle keep-alive
    connection it timed out): a read, a request carrying an Idempotency-Key or a conditional create
    (If-None-Exist: a second one finds what the first stored) is safe to send again; any other write may have
    been applied, so it is not.
    """
    if isinstance(exc, httpx.ConnectError):
        return True
    if isinstance(exc, httpx.RemoteProtocolError):
        names = {(k[0] if isinstance(k, tuple) else k) for k in headers}
        lowered = {(n.decode("latin-1") if isinstance(n, bytes) else n).lower() for n in names}
        return method.upper() in _SAFE_METHODS or bool({"idempotency-key", "if-none-exist"} & lowered)
    return False


# Headers that carry FHIR semantics or identity and must reach the service unchanged.
_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "if-match",
    "if-none-match",
    "if-none-exist",
    "if-modified-since",
    "prefer",
    "x-request-id",
    "idempotency-key",
    "x-provenance",
)
_RESPONSE_HEADERS = (
    "content-type",
    "etag",
    "location",
    "content-location",
    "last-modified",
    "www-authenticate",
    "x-request-id",
    "retry-after",
    "idempotent-replayed",
)


def _raw_headers(
    request: Request, names: tuple[str, ...], timeout_s: float | None = None
) -> list[tuple[bytes, bytes]]:
    """The headers to pass on, as the bytes that came (a non-ASCII value must not fail the proxy); with
    ``timeout_s``, ``X-Request-Timeout-Ms`` tells the service how long this call waits, so the service's
    deadline ends before it and a write this call gives up on is rolled back (relearn.shared.deadline)."""
    wanted = {n.encode() for n in names}
    headers = [(k, v) for k, v in request.headers.raw if k.lower() in wanted]
    if timeout_s is not None:
        headers.append((TIMEOUT_HEADER.lower().encode(), str(round(timeout_s * 1000)).encode()))
    return headers


async def forward(client: httpx.AsyncClient, upstream: str, request: Request, timeout_s: float) -> Response:
    headers = _raw_headers(request, _REQUEST_HEADERS, timeout_s)
    # The query as the client sent it: decoding and re-encoding it cost CPU and could change it.
    query = request.scope.get("query_string", b"")
    url = f"{upstream}{_raw_path(request)}" + (f"?{query.decode('latin-1')}" if query else "")
    body = await request.body()
    for attempt in (1, 2):
        try:
            resp = await _send(client, request.method, url, headers, body, timeout_s)
            break
        except httpx.TimeoutException as exc:
            raise unavailable("The service did not answer in time", status_code=504) from exc
        except httpx.HTTPError as exc:
            if attempt == 1 and may_resend(request.method, headers, exc):
                continue
            raise unavailable("The service that owns this resource type is unavailable") from exc
    out_headers = {k: v for k, v in resp.headers.items() if k.lower() in _RESPONSE_HEADERS}
    return Response(content=resp.content, status_code=resp.status_code, headers=out_headers)


# The lean upstream client that serves FHIR requests for a front door's own httpx client (registered by
# ``main.create_app``); a client a test passes in (ASGI or mock transports) goes through httpx's transport.
_LEAN: WeakKeyDictionary[httpx.AsyncClient, UpstreamClient] = WeakKeyDictionary()


def use_lean_client(client: httpx.AsyncClient, lean: UpstreamClient) -> None:
    """Send the FHIR requests proxied with ``client`` through ``lean`` instead (docs/performance.md)."""
    _LEAN[client] = lean


async def _send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    timeout_s: float,
) -> httpx.Response:
    """One request through the client's connection pool, without the client's per-request layers.

    Performance (issue 16, docs/performance.md): ``AsyncClient.request`` merges URLs, default headers and
    cookies, runs auth and redirect handling and stores the answer's cookies - about an eighth of the front
    door's CPU per proxied request, none of which a proxy wants (a cookie jar shared by every caller would
    even hand one caller's cookies to the next). The request goes straight to the client's transport, the
    same pool (``AsyncClient._transport_for_url``; a test's ASGI, mock or mounted transports alike).
    """
    lean = _LEAN.get(client)
    if lean is not None:  # the front door's own pool (main.create_app): the lean client (upstream.py)
        answer = await lean.request(method, url, headers, body, timeout_s)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)
    request = httpx.Request(
        method,
        url,
        headers=headers,
        content=body,
        extensions={"timeout": httpx.Timeout(timeout_s).as_dict()},
    )
    # Private, on purpose (see the docstring); it honours the client's mounts.
    transport: httpx.AsyncBaseTransport = client._transport_for_url(request.url)
    resp = await transport.handle_async_request(request)
    try:
        await resp.aread()
    finally:
        await resp.aclose()
    return resp


def _raw_path(request: Request) -> str:
    """The path as the client sent it (still percent-encoded): a decoded control character or space would
    make an invalid URL to the service."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return quote(raw.decode("latin-1"), safe="/%:@!$&'()*+,;=-._~")
    return quote(request.url.path, safe="/:@!$&'()*+,;=-._~")


@contextmanager
def service_errors(service: str) -> Iterator[None]:
    """A call to ``service`` that times out raises 504 (timeout); one that cannot reach it 503 (transient);
    both with ``Retry-After``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise unavailable(f"The {service} service did not answer in time", status_code=504) from exc
    except httpx.HTTPError as exc:
        raise unavailable(f"The {service} service is unavailable") from exc


_REST_REQUEST_HEADERS = (*_REQUEST_HEADERS, "content-length")
# REST APIs answer a few more headers than FHIR interactions (405 Allow, downloads, caching).
_REST_RESPONSE_HEADERS = (*_RESPONSE_HEADERS, "allow", "cache-control", "content-disposition", "vary")


# The authorization server's endpoints: browser apps' CORS and the login page's protections pass through.
# The sign-in page's anti-forgery cookie travels both ways.
AUTH_REQUEST_HEADERS = ("origin", "access-control-request-method", "access-control-request-headers", "cookie")
AUTH_RESPONSE_HEADERS = (
    "pragma",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "x-frame-options",
    "content-security-policy",
    "referrer-policy",
    "set-cookie",
)


async def forward_rest(
    client: httpx.AsyncClient,
    upstream: str,
    service: str,
    request: Request,
    timeout_s: float,
    *,
    extra_request_headers: tuple[str, ...] = (),
    extra_response_headers: tuple[str, ...] = (),
) -> Response:
    """Forward a REST request as it came: method, path, raw query, headers, body streamed to the service."""
    headers = _raw_headers(request, (*_REST_REQUEST_HEADERS, *extra_request_headers), timeout_s)
    url = f"{upstream}{_raw_path(request)}"
    if request.url.query:
        url = f"{url}?{request.url.query}"
    # The length passes through with the body, so a service sees what the caller sent (chunked stays chunked).
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    with service_errors(service):
        try:
            resp = await client.request(
                request.method,
                url,
                headers=headers,
                content=request.stream() if has_body else None,
                timeout=timeout_s,
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            # A streamed body cannot be sent twice: only a request without one is resent.
            if has_body or not may_resend(request.method, headers, exc):
                raise
            resp = await client.request(request.method, url, headers=headers, timeout=timeout_s)
    wanted = (*_REST_RESPONSE_HEADERS, *extra_response_headers)
    out_headers = {k: v for k, v in resp.headers.items() if k.lower() in wanted}
    return Response(content=resp.content, status_code=resp.status_code, headers=out_headers)
