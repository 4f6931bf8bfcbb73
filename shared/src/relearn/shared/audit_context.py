"""What the audit trail learns while a request runs: who called and which patients it touched.

The audit middleware (``relearn.shared.audit``) opens one :class:`AuditContext` per HTTP request or
WebSocket connection in a context variable; the auth dependency notes the principal, the FHIR store notes
the compartment patients of every resource it returns or writes, and a domain route names the patients it
touches with :func:`touch_patients`. Outside a request (consumers, workers) there is no context and every
call here is a no-op. This module imports nothing of Relearn, so the store and the auth code can use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AuditContext:
    """One audited access, filled in while it runs."""

    kind: str  # "http" | "websocket"
    method: str
    path: str
    query: bytes
    client_host: str | None
    request_id: str
    principal: Any = None  # relearn.shared.auth.Principal, once the token was verified
    patients: set[str] = field(default_factory=set)
    # Set once the event is staged (in the request's own transaction, or by the middleware).
    staged: bool = False
    # The HTTP status the access ended with (101 for an accepted WebSocket).
    status: int | None = None
    # The service that answers and its FHIR base URL (the event's observer and site).
    service: str = ""
    base_url: str = ""
    # The request's X-Provenance header (a client's own Provenance of its write), if it sent one.
    provenance: bytes | None = None


_CURRENT: ContextVar[AuditContext | None] = ContextVar("relearn_audit", default=None)


def current() -> AuditContext | None:
    return _CURRENT.get()


def touch_patients(*patient_ids: str | None) -> None:
    """Name patients the current request read or wrote (domain routes; the FHIR store does it itself)."""
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.patients.update(p for p in patient_ids if p)


def note_principal(principal: Any) -> None:
    ctx = _CURRENT.get()
    if ctx is not None:
        ctx.principal = principal


def touch_resources(patients_of: Callable[[dict[str, Any]], Iterable[str]], texts: Iterable[str]) -> None:
    """Note the compartment patients of stored resources (JSON texts); parsed only inside a request."""
    ctx = _CURRENT.get()
    if ctx is None:
        return
    for text in texts:
        if not text:
            continue
        try:
            ctx.patients.update(patients_of(json.loads(text)))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue


def touch_resource(patients_of: Callable[[dict[str, Any]], Iterable[str]], resource: dict[str, Any]) -> None:
    ctx = _CURRENT.get()
    if ctx is None:
        return
    try:
        ctx.patients.update(patients_of(resource))
    except (ValueError, TypeError, KeyError, AttributeError):
        return
