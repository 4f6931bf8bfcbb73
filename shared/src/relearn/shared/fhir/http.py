"""HTTP details of the FHIR REST API: media types, Prefer, If-Match, response headers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

from fastapi import Request

from relearn.shared.fhir.errors import InvalidRequest, NotAcceptable, UnsupportedMediaType
from relearn.shared.fhir.records import StoredResource

JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_FORMAT_JSON = ("json", *JSON_TYPES)
FORM = "application/x-www-form-urlencoded"
_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')

ReturnPref = Literal["minimal", "representation", "OperationOutcome"]


@dataclass(frozen=True)
class Prefer:
    """The ``Prefer`` header: what a write returns and how a search treats unknown parameters."""

    return_: ReturnPref = "representation"
    handling: Literal["strict", "lenient"] = "lenient"


def prefer(request: Request) -> Prefer:
    """Parse every ``Prefer`` header (comma-separated tokens; unknown tokens are ignored)."""
    ret: ReturnPref = "representation"
    handling: Literal["strict", "lenient"] = "lenient"
    for header in request.headers.getlist("prefer"):
        for token in header.split(","):
            key, _, value = token.strip().partition("=")
            value = value.strip().strip('"')
            if key.strip() == "return" and value in ("minimal", "representation", "OperationOutcome"):
                ret = value  # type: ignore[assignment]
            elif key.strip() == "handling" and value in ("strict", "lenient"):
                handling = value  # type: ignore[assignment]
    return Prefer(ret, handling)


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def check_response_format(request: Request) -> None:
    """406 when ``_format`` or ``Accept`` asks for anything but JSON (XML is not served)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and fmt.split(";")[0].strip().lower() not in _FORMAT_JSON:
        raise NotAcceptable(f"_format={fmt} is not supported; this server speaks application/fhir+json only")
    accept = request.headers.get("accept")
    if accept:
        types = [_media_type(part) for part in accept.split(",")]
        if not any(t in JSON_TYPES or t in ("*/*", "application/*", "") for t in types):
            raise NotAcceptable(f"Accept: {accept} is not supported; use application/fhir+json")


def check_body_type(request: Request, allowed: tuple[str, ...] = JSON_TYPES) -> None:
    """415 unless the body's Content-Type is one of ``allowed`` (a missing header is accepted)."""
    media = _media_type(request.headers.get("content-type"))
    if media and media not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {media} is not supported; send {' or '.join(allowed)}", expression="Content-Type"
        )


async def read_body(request: Request) -> bytes:
    """FastAPI dependency: the raw body of a FHIR JSON request (decimals are parsed later, exactly)."""
    check_response_format(request)
    check_body_type(request)
    return await request.body()


async def search_params(request: Request) -> list[tuple[str, str]]:
    """FastAPI dependency: search parameters from the query string and, for POST, the form body."""
    check_response_format(request)
    params = request.query_params.multi_items()
    if request.method == "POST":
        check_body_type(request, (FORM,))
        body = (await request.body()).decode("utf-8", errors="replace")
        params = [*params, *parse_qsl(body, keep_blank_values=True)]
    return params


def if_match(request: Request) -> int | None:
    """The version named by ``If-Match: W/"n"``, or None."""
    return parse_if_match(request.headers.get("if-match"))


def parse_if_match(header: str | None, expression: str = "If-Match") -> int | None:
    """The version an ``If-Match`` value (``W/"n"``) names, or None when there is none."""
    if header is None:
        return None
    m = _ETAG.match(header.strip())
    if not m or len(m.group(1)) > 10 or int(m.group(1)) > 2**31 - 1:
        raise InvalidRequest(
            f'If-Match must look like W/"<versionId>" (a version id up to 2^31-1), got {header[:60]!r}',
            expression=expression,
        )
    return int(m.group(1))


def not_modified(header: str | None, stored: StoredResource) -> bool:
    """Whether ``If-None-Match`` names the current version (``W/"n"``; ``"n"``, ``n`` and ``*`` too)."""
    if header is None:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        m = _ETAG.match(tag)
        if tag == "*" or (m is not None and len(m.group(1)) <= 10 and int(m.group(1)) == stored.version_id):
            return True
    return False


def resource_headers(stored: StoredResource, *, location_base: str | None = None) -> dict[str, str]:
    """ETag and Last-Modified; plus Location (``.../_history/n``) when ``location_base`` is given."""
    headers = stored.headers()
    if location_base is not None:
        headers["Location"] = f"{location_base}/{stored.version_url}"
    return headers
