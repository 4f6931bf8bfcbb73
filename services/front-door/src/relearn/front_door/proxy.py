"""Forward a FHIR request to the service that owns its resource type."""

from __future__ import annotations

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
