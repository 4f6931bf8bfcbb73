"""``_include`` and ``_revinclude`` across services at the one base URL.

A service searches its own database, so an ``_include`` that reaches a type another service
owns (``Procedure?_include=Procedure:based-on`` reaching a CarePlan) comes back with an
OperationOutcome issue naming the reference (``included-elsewhere`` extension) instead of the
resource. The front door reads each such reference from its owner with the caller's token and
adds it as a ``search.mode = include`` entry: what the caller may not read (scope, patient
compartment) is left out, exactly as a same-service include would be.

``_revinclude`` of a type another service owns would need a search there per page; it is
refused with 400 (not-supported) naming both services, rather than silently returning nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import Request, Response

from relearn.front_door.routing import RoutingTable, Upstreams
from relearn.shared.fhir import INCLUDED_ELSEWHERE, InvalidRequest, jsontext

_PASS_HEADERS = ("authorization", "accept", "x-request-id")


async def check_revincludes(table: RoutingTable, resource_type: str, request: Request) -> None:
    """400 for a ``_revinclude`` of a type owned by another service than ``resource_type``."""
    owner = await table.service_of(resource_type)
    for name, value in request.query_params.multi_items():
        if name.split(":")[0] != "_revinclude":
            continue
        source = value.split(":")[0]
        if not source or source == resource_type:
            continue
        source_owner = await table.service_of(source)
        if source_owner is not None and source_owner != owner:
            raise InvalidRequest(
                f"{name}={value}: {source} is served by the {source_owner} service and {resource_type} "
                f"by the {owner} service; _revinclude does not cross services. Search {source} at the base "
                f"URL instead ({source}?<reference parameter>={resource_type}/<id>).",
                expression="_revinclude",
                issue_code="not-supported",
            )


async def wants_includes(request: Request) -> bool:
    """Whether the search asks for ``_include`` (in the query, or the form body of ``_search``)."""
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        params += parse_qsl((await request.body()).decode("utf-8", errors="replace"), keep_blank_values=True)
    return any(name.split(":")[0] == "_include" for name, _ in params)


class IncludeResolver:
    def __init__(self, upstreams: Upstreams) -> None:
        self.up = upstreams

    async def resolve(self, request: Request, response: Response) -> Response:
        """The searchset with every ``included-elsewhere`` reference read from its owner and added."""
        if response.status_code != 200:
            return response
        try:
            bundle = jsontext.loads(bytes(response.body))
        except ValueError:
            return response
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return response
        entries: list[dict[str, Any]] = bundle.get("entry", [])
        refs = list(dict.fromkeys(ref for e in entries for ref in _elsewhere_refs(e)))
        if not refs:
            return response
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PASS_HEADERS}
        answers = await asyncio.gather(*(self._read(ref, headers) for ref in refs))
        found = dict(zip(refs, answers, strict=True))
        matches = [e for e in entries if not _is_outcome(e)]
        included = [
            {"fullUrl": f"{self.up.base_url}/{ref}", "resource": answer, "search": {"mode": "include"}}
            for ref, answer in found.items()
            if not isinstance(answer, str) and answer is not None
        ]
        outcomes = []
        for e in (e for e in entries if _is_outcome(e)):
            issues = []
            for issue in e["resource"].get("issue", []):
                ref = _elsewhere_ref(issue)
                if ref is None:
                    issues.append(issue)
                elif isinstance(found.get(ref), str):  # still unresolved: say why
                    issues.append({**issue, "diagnostics": found[ref]})
            if issues:
                outcomes.append({**e, "resource": {**e["resource"], "issue": issues}})
        bundle["entry"] = matches + included + outcomes
        out_headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(content=jsontext.dumps(bundle), status_code=200, headers=out_headers)

    async def _read(self, reference: str, headers: dict[str, str]) -> Any:
        """The resource (raw JSON), None when the caller may not see it, or why it could not be read."""
        rtype = reference.split("/")[0]
        owner = await self.up.table.service_of(rtype)
        if owner is None:
            return f"{reference} is not included: no service here holds {rtype} resources"
        url = f"{self.up.table.base_of(owner)}/fhir/{reference}"
        try:
            resp = await self.up.client.get(url, headers=headers, timeout=self.up.timeout_s)
        except httpx.HTTPError:
            return f"{reference} is not included: the {owner} service is unavailable"
        if resp.status_code == 200:
            return jsontext.raw(resp.text)
        if resp.status_code in (403, 404, 410):  # not visible to this caller, or gone: left out
            return None
        return f"{reference} is not included: the {owner} service answered {resp.status_code}"


def _is_outcome(entry: dict[str, Any]) -> bool:
    return (entry.get("search") or {}).get("mode") == "outcome"


def _elsewhere_refs(entry: dict[str, Any]) -> list[str]:
    if not _is_outcome(entry):
        return []
    issues = (entry.get("resource") or {}).get("issue", [])
    return [ref for ref in (_elsewhere_ref(i) for i in issues) if ref is not None]


def _elsewhere_ref(issue: dict[str, Any]) -> str | None:
    for ext in issue.get("extension", []):
        if ext.get("url") == INCLUDED_ELSEWHERE:
            ref = (ext.get("valueReference") or {}).get("reference")
            if isinstance(ref, str) and ref.count("/") == 1:
                return ref
    return None
