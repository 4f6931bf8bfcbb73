"""Who is calling: the verified token's subject, scopes and (for patient scopes) patient."""

from __future__ import annotations

from dataclasses import dataclass, field

from relearn.shared.auth.scopes import Access, Scope
from relearn.shared.fhir.errors import Forbidden


@dataclass(frozen=True)
class Principal:
    subject: str
    client_id: str
    scopes: frozenset[Scope]
    # The patient in context (SMART `patient` claim); required for patient/ scopes.
    patient: str | None = None
    # The device id for device credentials (device gateways), if any.
    device: str | None = None
    raw_scope: str = field(default="", compare=False)

    def _grants(self, resource_type: str, access: Access) -> list[Scope]:
        return [s for s in self.scopes if s.grants(resource_type, access)]

    def allows(self, resource_type: str, access: Access) -> bool:
        return bool(self._grants(resource_type, access))

    def require(self, resource_type: str, access: Access) -> None:
        """Raise 403 unless some scope grants ``access`` on ``resource_type``."""
        if not self.allows(resource_type, access):
            raise Forbidden(
                f"Token scopes '{self.raw_scope}' do not allow {access} on {resource_type}",
            )

    def patient_restriction(self, resource_type: str, access: Access) -> str | None:
        """The patient id this access is limited to, or None when it is not limited.

        Access is limited when the only scopes that grant it are ``patient/`` scopes: then
        the caller sees the compartment of the token's patient and nothing else.
        """
        grants = self._grants(resource_type, access)
        if any(s.context in ("user", "system") for s in grants):
            return None
        if not self.patient:
            raise Forbidden("A patient-scoped token must carry a 'patient' claim")
        return self.patient
