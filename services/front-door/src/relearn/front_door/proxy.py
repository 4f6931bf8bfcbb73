"""Forward a request to the service that owns it: a FHIR resource type, or a REST path (``forward_rest``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import Request, Response

from relearn.shared.fhir.errors import FhirError

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


async def forward(client: httpx.AsyncClient, upstream: str, request: Request, timeout_s: float) -> Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() in _REQUEST_HEADERS}
    url = f"{upstream}{request.url.path}"
    try:
        resp = await client.request(
            request.method,
            url,
            params=list(request.query_params.multi_items()),
            headers=headers,
            content=await request.body(),
            timeout=timeout_s,
        )
    except httpx.TimeoutException as exc:
        raise FhirError("The service did not answer in time", status_code=504, issue_code="timeout") from exc
    except httpx.HTTPError as exc:
        raise FhirError(
            "The service that owns this resource type is unavailable", status_code=503, issue_code="transient"
        ) from exc
    out_headers = {k: v for k, v in resp.headers.items() if k.lower() in _RESPONSE_HEADERS}
    return Response(content=resp.content, status_code=resp.status_code, headers=out_headers)


@contextmanager
def service_errors(service: str) -> Iterator[None]:
    """A call to ``service`` that times out raises 504 (timeout); one that cannot reach it 503 (transient)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise FhirError(
            f"The {service} service did not answer in time", status_code=504, issue_code="timeout"
        ) from exc
    except httpx.HTTPError as exc:
        raise FhirError(
            f"The {service} service is unavailable", status_code=503, issue_code="transient"
        ) from exc


_REST_REQUEST_HEADERS = (*_REQUEST_HEADERS, "content-length")
# REST APIs answer a few more headers than FHIR interactions (405 Allow, downloads, caching).
_REST_RESPONSE_HEADERS = (*_RESPONSE_HEADERS, "allow", "cache-control", "content-disposition", "vary")


async def forward_rest(
    client: httpx.AsyncClient, upstream: str, service: str, request: Request, timeout_s: float
) -> Response:
    """Forward a REST request as it came: method, path, raw query, headers, body streamed to the service."""
    headers = {k: v for k, v in request.headers.items() if k.lower() in _REST_REQUEST_HEADERS}
    url = f"{upstream}{request.url.path}"
    if request.url.query:
        url = f"{url}?{request.url.query}"
    # The length passes through with the body, so a service sees what the caller sent (chunked stays chunked).
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    with service_errors(service):
        resp = await client.request(
            request.method,
            url,
            headers=headers,
            content=request.stream() if has_body else None,
            timeout=timeout_s,
        )
    out_headers = {k: v for k, v in resp.headers.items() if k.lower() in _REST_RESPONSE_HEADERS}
    return Response(content=resp.content, status_code=resp.status_code, headers=out_headers)
