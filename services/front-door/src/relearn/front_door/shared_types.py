"""Types more than one service serves (each publishes its own CodeSystems) at the one base URL.

Reads of one resource (``/CodeSystem/<id>``, its versions and history) go to each service in
turn until one knows it; a type-level search asks every service for the first
``offset + _count`` matches and pages over their union (services in configured order).
Everything else (writes, type history) goes to the first service that declares the type.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import Request, Response

from relearn.front_door.proxy import forward, unavailable
from relearn.front_door.routing import Upstreams
from relearn.shared.fhir import (
    DEFAULT_COUNT,
    MAX_COUNT,
    OFFSET_PARAM,
    FhirResponse,
    InvalidRequest,
    RawJson,
    jsontext,
    page_links,
)

_PASS_HEADERS = ("authorization", "accept", "prefer", "x-request-id")


async def route_shared_type(
    request: Request,
    services: list[str],
    up: Upstreams,
    resource_type: str,
    rest: str,
) -> Response:
    if request.method == "GET" and rest not in ("", "_history"):
        answer: Response | None = None
        for name in services:
            answer = await forward(up.client, up.table.base_of(name), request, up.timeout_s)
            if answer.status_code != 404:
                return answer
        assert answer is not None
        return answer
    if request.method == "GET" and rest == "":
        return await _merged_search(request, services, up, resource_type)
    return await forward(up.client, up.table.base_of(services[0]), request, up.timeout_s)


def _int(params: list[tuple[str, str]], name: str, default: int) -> int:
    value = next((v for k, v in params if k == name), None)
    if value is None:
        return default
    if not value.isdigit():
        raise InvalidRequest(f"{name} must be a non-negative integer", expression=name)
    return int(value)


async def _merged_search(
    request: Request,
    services: list[str],
    up: Upstreams,
    resource_type: str,
) -> Response:
    params = request.query_params.multi_items()
    count = min(_int(params, "_count", DEFAULT_COUNT), MAX_COUNT)
    offset = _int(params, OFFSET_PARAM, 0)
    window = offset + count
    if window > MAX_COUNT:
        raise InvalidRequest(
            f"{resource_type} is served by several services; page within the first {MAX_COUNT} results",
            expression=OFFSET_PARAM,
        )
    kept = [(k, v) for k, v in params if k not in ("_count", OFFSET_PARAM)]
    headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_HEADERS}

    async def ask(name: str) -> httpx.Response:
        url = f"{up.table.base_of(name)}/fhir/{resource_type}"
        try:
            return await up.client.get(
                url, params=[*kept, ("_count", str(window))], headers=headers, timeout=up.timeout_s
            )
        except httpx.HTTPError as exc:
            raise unavailable(
                f"The {name} service, which serves {resource_type} too, is unavailable"
            ) from exc

    answers = await asyncio.gather(*(ask(name) for name in services))
    for resp in answers:
        if resp.status_code != 200:
            keep = ("content-type", "www-authenticate", "x-request-id")
            return Response(
                resp.content, resp.status_code, {k: v for k, v in resp.headers.items() if k.lower() in keep}
            )
    bundles: list[dict[str, Any]] = [jsontext.loads(resp.content) for resp in answers]
    by_mode: dict[str, list[Any]] = {"match": [], "include": [], "outcome": []}
    for bundle in bundles:
        for entry in bundle.get("entry", []):
            by_mode.setdefault((entry.get("search") or {}).get("mode", "match"), []).append(entry)
    totals = [b.get("total") for b in bundles]
    total = sum(t for t in totals if isinstance(t, int)) if all(isinstance(t, int) for t in totals) else None
    page = by_mode["match"][offset:window]
    merged: dict[str, Any] = {**bundles[0]}
    if total is not None:
        merged["total"] = total
    merged["link"] = page_links(
        f"{up.base_url}/{resource_type}",
        kept,
        offset=offset,
        count=count,
        total=total,
        page_len=len(page),
    )
    merged["entry"] = page + by_mode["include"] + by_mode["outcome"]
    if not merged["entry"]:
        del merged["entry"]
    return FhirResponse(RawJson(jsontext.dumps(merged)))
