"""The R4 CapabilityStatement for what the definitions declare, and nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from relearn.shared.fhir.dates import format_instant, now_ms
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.search_params import SearchParam

_INTERACTION_ORDER = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
_SMART_OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# POST [base] with a Bundle (see transaction.py); the front door restates these for the whole platform.
SYSTEM_INTERACTIONS = (
    {
        "code": "transaction",
        "documentation": "All entries in one database transaction: every entry is stored or none is. "
        "Processed DELETE, POST, PUT, GET; urn:uuid fullUrl references are rewritten to the assigned ids; "
        "request.ifNoneExist and request.ifMatch are honoured. PATCH is not supported.",
    },
    {
        "code": "batch",
        "documentation": "Each entry on its own (its own database transaction); the batch-response gives "
        "every entry its status, and an OperationOutcome for those that failed.",
    },
)
_COMMON_PARAMS = (
    {"name": "_id", "type": "token", "documentation": "Logical id of the resource"},
    {"name": "_lastUpdated", "type": "date", "documentation": "meta.lastUpdated"},
)


def capability_statement(
    definitions: Sequence[ResourceDefinition],
    *,
    base_url: str,
    software_name: str,
    version: str,
    token_url: str | None = None,
    authorize_url: str | None = None,
) -> dict[str, Any]:
    """An R4 (4.0.1) CapabilityStatement listing exactly the declared interactions and parameters."""
    security: dict[str, Any] = {
        "cors": True,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 bearer tokens with SMART scopes",
            }
        ],
    }
    uris = [("token", token_url), ("authorize", authorize_url)]
    oauth = [{"url": name, "valueUri": url} for name, url in uris if url]
    if oauth:
        security["extension"] = [{"url": _SMART_OAUTH_URIS, "extension": oauth}]
    registry = {d.type: d for d in definitions}
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_instant(now_ms()),
        "kind": "instance",
        "software": {"name": software_name, "version": version},
        "implementation": {"description": software_name, "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": security,
                "resource": [_resource(d, registry) for d in definitions],
                "interaction": [dict(i) for i in SYSTEM_INTERACTIONS],
            }
        ],
    }


def _resource(rdef: ResourceDefinition, registry: dict[str, ResourceDefinition]) -> dict[str, Any]:
    supports = set(rdef.interactions)
    out: dict[str, Any] = {"type": rdef.type}
    if rdef.profile:
        out["profile"] = rdef.profile
    if rdef.documentation:
        out["documentation"] = rdef.documentation
    out["interaction"] = [{"code": code} for code in _INTERACTION_ORDER if code in supports]
    out["versioning"] = "versioned-update"
    out["readHistory"] = "vread" in supports
    out["updateCreate"] = "update" in supports
    out["conditionalCreate"] = "create" in supports
    out["conditionalRead"] = "not-supported"
    out["conditionalUpdate"] = "update" in supports
    out["conditionalDelete"] = "single" if "delete" in supports else "not-supported"
    out["referencePolicy"] = ["literal", "local"]
    if "search-type" in supports:
        out["searchInclude"] = [f"{rdef.type}:{name}" for name in rdef.includes]
        out["searchRevInclude"] = [
            f"{other.type}:{name}"
            for other in registry.values()
            for name in other.includes
            if not other.params[name].targets or rdef.type in other.params[name].targets
        ]
        out["searchParam"] = [*_COMMON_PARAMS, *(_param(p) for p in rdef.search_params)]
    return {k: v for k, v in out.items() if v != []}


def _param(p: SearchParam) -> dict[str, Any]:
    out = {"name": p.name, "type": p.kind}
    if p.definition:
        out["definition"] = p.definition
    out["documentation"] = p.description or f"Path: {' | '.join(p.paths)}"
    return out
