"""Who is calling: the verified token's subject, scopes, (for patient scopes) patient and expiry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

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
    # When the token stops being valid (its `exp` claim); None when unknown. Long-lived connections
    # (WebSockets) end at this time, since the token was only checked when they opened.
    expires_at: datetime | None = field(default=None, compare=False)

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """Seconds until the token expires (0 or less once it has); None when the expiry is unknown."""
        if self.expires_at is None:
            return None
        return (self.expires_at - (now or datetime.now(UTC))).total_seconds()

    def expired(self, now: datetime | None = None) -> bool:
        left = self.seconds_left(now)
        return left is not None and left <= 0

    @property
    def is_device(self) -> bool:
        """A device credential (a token with a ``device`` claim): a hub or sensor, not a person or system."""
        return self.device is not None

    def may_ingest(self) -> bool:
        """Whether this is a device credential allowed to send frames (``Observation`` write scope)."""
        return self.is_device and any(s.grants("Observation", "write") for s in self.scopes)

    def _grants(self, resource_type: str, access: Access) -> list[Scope]:
        # Device credentials carry only what ingest needs (frames, their own streams' state, checked by
        # the device gateway itself): no FHIR or domain read or write, whatever scopes the token lists.
        if self.is_device:
            return []
        return [s for s in self.scopes if s.grants(resource_type, access)]

    def allows(self, resource_type: str, access: Access) -> bool:
        return bool(self._grants(resource_type, access))

    def require(self, resource_type: str, access: Access) -> None:
        """Raise 403 unless some scope grants ``access`` on ``resource_type``."""
        if self.is_device:
            raise Forbidden(
                f"Device credentials (Device/{self.device}) may only send frames to /ingest and read their "
                f"own streams; {access} on {resource_type} needs a user or system token",
            )
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
