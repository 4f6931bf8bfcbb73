"""Who is writing, for the Provenance a service records with its writes, and the client's own Provenance.

A service that writes Provenance (the plan service, for every CarePlan, Goal and ServiceRequest version)
takes the caller from :func:`request_agent` and a client's ``X-Provenance`` header (a FHIR Provenance as JSON,
per the FHIR RESTful API) from :func:`client_provenance`, which validates it and fills in ``target`` and
``recorded``. Both read the request's audit context (``relearn.shared.audit_context``): outside a request
(consumers, workers) there is no agent and no client Provenance.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from relearn.shared.audit_context import current
from relearn.shared.fhir.errors import InvalidRequest

HEADER = "X-Provenance"
MAX_HEADER_BYTES = 16 * 1024


@dataclass(frozen=True)
class RequestAgent:
    """The verified caller of the current request."""

    client_id: str
    subject: str
    device: str | None = None
    fhir_user: str | None = None


def request_agent() -> RequestAgent | None:
    ctx = current()
    principal = ctx.principal if ctx is not None else None
    if principal is None:
        return None
    return RequestAgent(
        client_id=principal.client_id,
        subject=principal.subject,
        device=principal.device,
        fhir_user=principal.fhir_user,
    )


def client_provenance(targets: Sequence[str]) -> dict[str, Any] | None:
    """The request's ``X-Provenance`` as a valid Provenance about ``targets`` (references), or None.

    400 naming the header when it is not a JSON Provenance or not a valid one once its target is set.
    """
    ctx = current()
    raw = ctx.provenance if ctx is not None else None
    if not raw:
        return None
    if len(raw) > MAX_HEADER_BYTES:
        raise InvalidRequest(f"{HEADER} is larger than {MAX_HEADER_BYTES} bytes", expression=HEADER)
    try:
        resource = json.loads(raw)
    except ValueError:
        raise InvalidRequest(f"{HEADER} is not JSON", expression=HEADER) from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Provenance":
        raise InvalidRequest(f"{HEADER} must be a FHIR Provenance resource", expression=HEADER)
    resource.pop("id", None)
    resource.pop("meta", None)
    resource["target"] = [{"reference": t} for t in targets]
    resource.setdefault("recorded", datetime.now(UTC).isoformat(timespec="milliseconds"))
    from fhir.resources.R4B.provenance import Provenance  # heavy: only when a client sends one

    try:
        Provenance.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InvalidRequest(
            f"{HEADER} is not a valid Provenance: {where}: {first.get('msg')}", expression=f"{HEADER}.{where}"
        ) from None
    return resource
