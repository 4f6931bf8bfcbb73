"""batch and transaction Bundles at the one base URL, over services that each own some types.

    batch        split by owning service (the type of each entry's request.url); each service
                 gets one batch of its entries, all services at once; the batch-response is
                 put back together in the request's order. A service that cannot answer fails
                 only its own entries (503/504 in their response.status).
    transaction  atomic where it can be: when every entry's type belongs to one service, the
                 Bundle goes to that service whole and runs in one database transaction there.
                 A transaction spanning services is refused (400, not-supported) naming the
                 services: no distributed commit is attempted, so nothing is ever half-stored.

The Bundle is validated here first (the same rules the services apply), so a malformed entry
is reported with its path in the request, not in a service's sub-Bundle.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
from fastapi import Request, Response

from relearn.front_door.proxy import service_errors
from relearn.front_door.routing import Upstreams
from relearn.shared.fhir import (
    FHIR_JSON,
    BundleRequest,
    FhirError,
    FhirResponse,
    Issue,
    NotFound,
    RawJson,
    check_body_type,
    check_response_format,
    error_entry,
    jsontext,
    parse_bundle,
    response_bundle,
    status_line,
)
from relearn.shared.service import TIMEOUT_HEADER

# Headers a service needs to process the Bundle as the caller asked.
_PASS_HEADERS = ("authorization", "accept", "prefer", "x-request-id", "idempotency-key")
_ENTRY_REF = re.compile(r"Bundle\.entry\[(\d+)\]")


class BundleRouter:
    def __init__(self, upstreams: Upstreams) -> None:
        self.up = upstreams

    async def handle(self, request: Request) -> Response:
        check_response_format(request)
        check_body_type(request)
        body = await request.body()
        parsed = parse_bundle(body, self.up.base_url, max_entries=request.app.state.max_bundle_entries)
        raw_entries: list[Any] = jsontext.loads(body).get("entry", [])
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_HEADERS}
        headers["content-type"] = FHIR_JSON
        owners = [await self.up.table.service_of(e.type) for e in parsed.entries]
        if parsed.type == "transaction":
            return await self._transaction(body, parsed, owners, headers)
        return await self._batch(raw_entries, parsed, owners, headers)

    # -- transaction ----------------------------------------------------------------------------
    async def _transaction(
        self, body: bytes, parsed: BundleRequest, owners: list[str | None], headers: dict[str, str]
    ) -> Response:
        for e, owner in zip(parsed.entries, owners, strict=True):
            if owner is None:
                raise NotFound(
                    f"Bundle.entry[{e.index}]: resource type '{e.type}' is not served by this server",
                    expression=f"Bundle.entry[{e.index}].request.url",
                    issue_code="not-supported",
                )
        services = list(dict.fromkeys(o for o in owners if o is not None))
        if not services:
            return FhirResponse(RawJson(response_bundle("transaction-response", [])))
        if len(services) > 1:
            raise _spanning(parsed, owners, services)
        resp = await self._post(services[0], body, headers)
        keep = ("content-type", "x-request-id", "www-authenticate", "retry-after", "idempotent-replayed")
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() in keep}
        return Response(content=resp.content, status_code=resp.status_code, headers=out_headers)

    # -- batch ----------------------------------------------------------------------------------
    async def _batch(
        self,
        raw_entries: list[Any],
        parsed: BundleRequest,
        owners: list[str | None],
        headers: dict[str, str],
    ) -> Response:
        results: list[Any] = [None] * len(parsed.entries)
        groups: dict[str, list[int]] = {}
        for e, owner in zip(parsed.entries, owners, strict=True):
            if owner is None:
                error = NotFound(
                    f"Bundle.entry[{e.index}] ({e.method} {e.url}): resource type '{e.type}' is not served "
                    "by this server",
                    expression=f"Bundle.entry[{e.index}].request.url",
                    issue_code="not-supported",
                )
                results[e.index] = error_entry(error)
            else:
                groups.setdefault(owner, []).append(e.index)
        answers = await asyncio.gather(
            *(self._sub_batch(name, [raw_entries[i] for i in idxs], headers) for name, idxs in groups.items())
        )
        for idxs, answer in zip(groups.values(), answers, strict=True):
            if isinstance(answer, Response):  # not authenticated: the whole request is refused as is
                return answer
            for k, i in enumerate(idxs):
                entry = answer[k] if isinstance(answer, list) else answer
                results[i] = _renumber(entry, idxs)
        return FhirResponse(RawJson(response_bundle("batch-response", results)))

    async def _sub_batch(
        self, service: str, entries: list[Any], headers: dict[str, str]
    ) -> list[Any] | dict[str, Any] | Response:
        """The service's response entries, one error entry for all of them, or a 401 to pass on."""
        sub = {"resourceType": "Bundle", "type": "batch", "entry": entries}
        try:
            resp = await self._post(service, jsontext.dumps(sub).encode("utf-8"), headers)
        except FhirError as exc:
            return error_entry(exc)
        if resp.status_code == 401:
            keep = ("content-type", "www-authenticate")
            return Response(
                content=resp.content,
                status_code=401,
                headers={k: v for k, v in resp.headers.items() if k.lower() in keep},
            )
        try:
            answer = jsontext.loads(resp.content)
        except ValueError:
            answer = None
        if resp.status_code == 200 and isinstance(answer, dict) and answer.get("type") == "batch-response":
            out = answer.get("entry", [])
            if isinstance(out, list) and len(out) == len(entries):
                return out
        if isinstance(answer, dict) and answer.get("resourceType") == "OperationOutcome":
            return {"response": {"status": status_line(resp.status_code), "outcome": answer}}
        error = FhirError(
            f"The {service} service answered the batch with an unexpected {resp.status_code}",
            status_code=502,
            issue_code="exception",
        )
        return error_entry(error)

    async def _post(self, service: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        url = f"{self.up.table.base_of(service)}/fhir"
        with service_errors(service):
            timeout = {TIMEOUT_HEADER: str(round(self.up.timeout_s * 1000))}  # relearn.shared.deadline
            resp = await self.up.client.post(
                url, content=content, headers={**headers, **timeout}, timeout=self.up.timeout_s
            )
        return resp


def _spanning(parsed: BundleRequest, owners: list[str | None], services: list[str]) -> FhirError:
    by_service: dict[str, list[str]] = {}
    for e, owner in zip(parsed.entries, owners, strict=True):
        if owner is not None:
            by_service.setdefault(owner, []).append(f"entry[{e.index}] {e.type}")
    detail = "; ".join(f"{name}: {', '.join(items)}" for name, items in by_service.items())
    message = (
        f"This transaction spans {len(services)} services ({detail}). A transaction is atomic only within "
        "one service, so one that spans services is refused rather than half-stored: send a batch (each "
        "entry on its own), or one transaction per service."
    )
    first = services[0]
    elsewhere = [
        f"Bundle.entry[{e.index}].request.url"
        for e, owner in zip(parsed.entries, owners, strict=True)
        if owner != first
    ]
    issue = Issue("not-supported", message, "error", elsewhere)
    return FhirError(message, status_code=400, issue_code="not-supported", issues=[issue])


def _renumber(entry: Any, idxs: list[int]) -> Any:
    """A service's ``Bundle.entry[k]`` (of its sub-Bundle) as ``Bundle.entry[idxs[k]]`` of the request."""

    def fix(text: str) -> str:
        def sub(m: re.Match[str]) -> str:
            k = int(m.group(1))
            return f"Bundle.entry[{idxs[k]}]" if k < len(idxs) else m.group(0)

        return _ENTRY_REF.sub(sub, text)

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return fix(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: (walk(v) if k != "resource" else v) for k, v in value.items()}
        return value

    return walk(entry)
