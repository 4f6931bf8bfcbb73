"""The FHIR resource type the audit service serves: AuditEvent, read-only (written from the audit topic).

Search parameters are FHIR R4's for AuditEvent (``patient`` and ``entity`` on ``entity.what``, ``agent`` on
``agent.who``, ``date`` on ``recorded``, ``type``, ``subtype``, ``action``, ``outcome``, ``source``) plus
``agent-identifier`` (``agent.who.identifier``: the client id or token subject, which BALP records as
identifiers) and ``entity-identifier`` (``entity.what.identifier``: e.g. the request id). AuditEvent is in
the Patient compartment through ``patient``.
"""

from __future__ import annotations

from fhir.resources.R4B.auditevent import AuditEvent

from relearn.shared.fhir import (
    PUBLISHED_INTERACTIONS,
    ResourceDefinition,
    date,
    reference,
    token,
)

AUDIT_EVENT = ResourceDefinition(
    type="AuditEvent",
    model=AuditEvent,
    search_params=[
        reference("patient", "entity.what", targets=("Patient",)),
        reference("entity", "entity.what"),
        token("entity-identifier", "entity.what.identifier"),
        reference("agent", "agent.who"),
        token("agent-identifier", "agent.who.identifier"),
        reference("source", "source.observer"),
        date("date", "recorded"),
        token("type", "type"),
        token("subtype", "subtype"),
        token("action", "action"),
        token("outcome", "outcome"),
        token("entity-role", "entity.role"),
    ],
    compartment_param="patient",
    interactions=PUBLISHED_INTERACTIONS,
    documentation=(
        "One AuditEvent per access to any Relearn service (read, vread, search, history, create, update, "
        "delete, operations, WebSockets, ingest), allowed, denied or failed, shaped after IHE BALP. "
        "Read-only: written by the platform. Needs a scope naming AuditEvent (user/ or system/), or a "
        "patient/AuditEvent scope for the patient's own compartment."
    ),
)

DEFINITIONS = [AUDIT_EVENT]
