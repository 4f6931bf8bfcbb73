"""Who is calling: the verified token's subject, scopes, (for patient scopes) patient and expiry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from relearn.shared.auth.scopes import Access, Filter, Scope
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
    # The user behind an App Launch token (its SMART ``fhirUser`` claim: ``Practitioner/<id>``,
    # ``Patient/<id>``); audit and Provenance name them as the agent.
    fhir_user: str | None = field(default=None, compare=False)
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
        """Whether this is a device credential allowed to send frames (frames become Observations: an
        ``Observation`` scope with ``c``, v1 ``system/Observation.write`` or v2 ``system/Observation.c``)."""
        return self.is_device and any(s.grants("Observation", "c") for s in self.scopes)

    def _grants(self, resource_type: str, access: Access) -> list[Scope]:
        # Device credentials carry only what ingest needs (frames, their own streams' state, checked by
        # the device gateway itself): no FHIR or domain read or write, whatever scopes the token lists.
        if self.is_device:
            return []
        return [s for s in self.scopes if s.grants(resource_type, access)]

    def allows(self, resource_type: str, access: Access) -> bool:
        """Whether some scope grants ``access`` (a letter; or coarse "read"/"write") on the type, filtered
        or not. Enforcement goes through :meth:`require` or :meth:`access`, never this alone."""
        return bool(self._grants(resource_type, access))

    def _refuse(self, resource_type: str, access: Access) -> Forbidden:
        if self.is_device:
            return Forbidden(
                f"Device credentials (Device/{self.device}) may only send frames to /ingest and read their "
                f"own streams; {_WHAT.get(access, access)} on {resource_type} needs a user or system token",
            )
        letter = f" ('{access}')" if access in _WHAT else ""
        return Forbidden(
            f"Token scopes '{self.raw_scope}' do not allow {_WHAT.get(access, access)}{letter} on "
            f"{resource_type}",
        )

    def access(self, resource_type: str, access: Access) -> Restriction:
        """What ``access`` on ``resource_type`` is confined to (403 when no scope grants it at all).

        The patient: set when only ``patient/`` scopes grant it (then the caller sees and writes that
        patient's compartment only). The filter: the v2 scope filters the granting scopes carry, as
        alternatives (a resource must match one), or None when one of them is unfiltered.
        When ``user/``/``system/`` scopes grant the access, ``patient/`` scopes add nothing to it: the
        union is then taken over the ``user/``/``system/`` scopes only (never wider than granted).
        """
        grants = self._grants(resource_type, access)
        if not grants:
            raise self._refuse(resource_type, access)
        wide = [s for s in grants if s.context in ("user", "system")]
        patient: str | None = None
        if not wide:
            if not self.patient:
                raise Forbidden("A patient-scoped token must carry a 'patient' claim")
            patient = self.patient
        relevant = wide or grants
        if any(not s.filters for s in relevant):
            return Restriction(patient, None)
        return Restriction(patient, tuple(sorted({s.filters for s in relevant})))

    def require(self, resource_type: str, access: Access) -> None:
        """Raise 403 unless some unfiltered scope grants ``access`` on ``resource_type``.

        For endpoints that cannot apply a v2 scope filter (domain APIs, WebSockets): a filtered scope
        alone is refused there rather than read as the whole type. The FHIR API uses :meth:`access`.
        """
        if self.access(resource_type, access).filters is not None:
            raise Forbidden(
                f"Token scopes '{self.raw_scope}' grant {_WHAT.get(access, access)} on {resource_type} "
                "only through filtered scopes, which this endpoint cannot apply: it needs an unfiltered "
                f"{resource_type} scope",
            )

    def patient_restriction(self, resource_type: str, access: Access) -> str | None:
        """The patient id this access is limited to, or None when it is not limited.

        Access is limited when the only scopes that grant it are ``patient/`` scopes: then
        the caller sees the compartment of the token's patient and nothing else.
        """
        return self.access(resource_type, access).patient


@dataclass(frozen=True)
class Restriction:
    """What one kind of access is confined to: a patient's compartment and/or scope filters."""

    patient: str | None = None
    # Alternatives (a resource must match at least one), each a conjunction of (param, value)
    # search criteria; None: no filter.
    filters: tuple[Filter, ...] | None = None


_WHAT: dict[str, str] = {
    "c": "create",
    "r": "read (read, vread, instance history)",
    "u": "update",
    "d": "delete",
    "s": "search (search, type history)",
}
