"""HTTP of the audit service: the FHIR routes come from its ResourceDefinition; this adds the check that
AuditEvent needs a scope naming it (a wildcard ``system/*.read`` is not enough to read who read what)."""

from __future__ import annotations

from relearn.shared.auth import PrincipalDep
from relearn.shared.fhir import Forbidden


def require_audit_scope(principal: PrincipalDep) -> None:
    """403 unless a scope names AuditEvent (``user/``, ``system/`` or ``patient/AuditEvent...``)."""
    if not any(getattr(s, "resource_type", None) == "AuditEvent" for s in principal.scopes):
        raise Forbidden(
            "AuditEvent needs a scope naming it (e.g. user/AuditEvent.read, or patient/AuditEvent.read "
            "for one's own record); wildcard scopes do not grant the audit trail"
        )
