"""searchset and history Bundles, written as JSON text around the stored resource texts.

Stored resources are embedded verbatim (``jsontext.raw``) so decimals keep the client's
digits; only ``_summary``/``_elements`` make a resource be re-serialised (still exactly).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from relearn.shared.fhir import jsontext
from relearn.shared.fhir.canonical import structure_definition
from relearn.shared.fhir.dates import format_instant, now_ms
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import Issue, operation_outcome
from relearn.shared.fhir.paging import page_links, page_url
from relearn.shared.fhir.records import HistoryResult, SearchResult, StoredResource

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")
# Marks an OperationOutcome issue naming an _include target another service holds: the front door
# reads those and adds them to the searchset (see services/front-door includes.py).
INCLUDED_ELSEWHERE = structure_definition("included-elsewhere")


def _bundle(kind: str, total: int | None, links: list[dict[str, Any]], entries: list[Any]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": format_instant(now_ms())},
        "type": kind,
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


def searchset_bundle(
    result: SearchResult,
    rdef: ResourceDefinition,
    *,
    base_url: str,
    definitions: dict[str, ResourceDefinition] | None = None,
) -> str:
    """The searchset Bundle text for one page of ``result`` (links on ``base_url``)."""
    q = result.query
    base = f"{base_url}/{rdef.type}"
    if q.count_only:
        links = [{"relation": "self", "url": page_url(base, q.link_params, offset=0, count=q.count)}]
    else:
        links = page_links(
            base,
            q.link_params,
            offset=q.offset,
            count=q.count,
            total=result.total,
            page_len=len(result.matches),
        )
    defs = definitions or {rdef.type: rdef}
    entries = [
        _search_entry(s, "match", base_url, defs.get(s.resource_type), q.summary, q.elements)
        for s in result.matches
    ]
    entries += [
        _search_entry(s, "include", base_url, defs.get(s.resource_type), q.summary, None)
        for s in result.included
    ]
    issues = [
        Issue("not-supported", f"Ignored search parameter: {p}", "warning", [p.split("=")[0]])
        for p in q.ignored
    ]
    if issues or result.elsewhere:
        outcome = operation_outcome(issues)
        outcome["issue"].extend(elsewhere_issue(ref) for ref in result.elsewhere)
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    return jsontext.dumps(_bundle("searchset", result.total, links, entries))


def elsewhere_issue(reference: str) -> dict[str, Any]:
    """An issue saying an ``_include`` reached ``reference``, held by another service (machine-readable)."""
    return {
        "extension": [{"url": INCLUDED_ELSEWHERE, "valueReference": {"reference": reference}}],
        "severity": "information",
        "code": "informational",
        "diagnostics": f"{reference} is held by another service and is not included here; "
        "read it at the FHIR base URL",
    }


def _search_entry(
    stored: StoredResource,
    mode: str,
    base_url: str,
    rdef: ResourceDefinition | None,
    summary: str | None,
    elements: Sequence[str] | None,
) -> dict[str, Any]:
    return {
        "fullUrl": f"{base_url}/{stored.relative_url}",
        "resource": shaped(stored.text, rdef, summary, elements),
        "search": {"mode": mode},
    }


def shaped(
    text: str, rdef: ResourceDefinition | None, summary: str | None, elements: Sequence[str] | None
) -> Any:
    """The stored text as is, or a ``_summary``/``_elements`` subset marked SUBSETTED."""
    if rdef is None or (summary in (None, "count") and not elements):
        return jsontext.raw(text)
    resource = jsontext.loads(text)
    keep = _kept_elements(rdef, resource, summary, elements)
    out = {k: v for k, v in resource.items() if k in keep or (k.startswith("_") and k[1:] in keep)}
    meta = dict(out.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    out["meta"] = meta
    return out


def _kept_elements(
    rdef: ResourceDefinition, resource: dict[str, Any], summary: str | None, elements: Sequence[str] | None
) -> set[str]:
    fields = rdef.model.model_fields
    keep = set(_ALWAYS)
    if summary == "data":
        return set(resource) - {"text"}
    if summary in ("true", "text"):
        flag = "summary_element_property" if summary == "true" else "element_required"
        for name, f in fields.items():
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            if extra.get(flag):
                keep.add(f.alias or name)
        if summary == "text":
            keep.add("text")
        return keep
    choices: dict[str, list[str]] = rdef.model.model_construct().get_one_of_many_fields() if elements else {}
    for e in elements or ():
        keep.update(choices.get(e, [e]))
    return keep


def history_bundle(
    result: HistoryResult,
    *,
    base_url: str,
    path: str,
    params: Sequence[tuple[str, str]],
) -> str:
    """The history Bundle text; deletions are entries with a request and no resource."""
    links = page_links(
        f"{base_url}/{path}",
        params,
        offset=result.offset,
        count=result.count,
        total=result.total,
        page_len=len(result.entries),
    )
    entries = [_history_entry(s, base_url) for s in result.entries]
    return jsontext.dumps(_bundle("history", result.total, links, entries))


def _history_entry(stored: StoredResource, base_url: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{base_url}/{stored.relative_url}"}
    if not stored.deleted:
        entry["resource"] = jsontext.raw(stored.text)
    method = stored.method or "PUT"
    url = stored.resource_type if method == "POST" else stored.relative_url
    entry["request"] = {"method": method, "url": url}
    status = "204 No Content" if stored.deleted else "201 Created" if stored.version_id == 1 else "200 OK"
    entry["response"] = {
        "status": status,
        "etag": stored.etag,
        "lastModified": format_instant(stored.last_updated),
    }
    return entry
