"""SMART on FHIR v1/v2 scopes: ``<context>/<resourceType|*>.<read|write|*|cruds>``.

``patient/*.read`` lets a patient's app read that patient's compartment only;
``user/CarePlan.write`` lets a clinician's app write care plans; ``system/*.read``
is a backend service (an EHR) reading everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Access = Literal["read", "write"]
Context = Literal["patient", "user", "system"]

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.(read|write|\*|[cruds]+)$")


@dataclass(frozen=True)
class Scope:
    context: Context
    resource_type: str  # "*" for any type
    read: bool
    write: bool

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """Parse one SMART scope; None for scopes that are not resource scopes (openid, launch ...)."""
        m = _SCOPE.match(text)
        if not m:
            return None
        context, rtype, perm = m.groups()
        if perm == "*":
            read = write = True
        elif perm in ("read", "write"):
            read, write = perm == "read", perm == "write"
        else:  # SMART v2: c(reate) r(ead) u(pdate) d(elete) s(earch)
            read = "r" in perm or "s" in perm
            write = any(c in perm for c in "cud")
        return cls(context, rtype, read, write)  # type: ignore[arg-type]

    def grants(self, resource_type: str, access: Access) -> bool:
        if self.resource_type not in ("*", resource_type):
            return False
        return self.read if access == "read" else self.write


def parse_scopes(text: str) -> frozenset[Scope]:
    return frozenset(s for s in (Scope.parse(t) for t in text.split()) if s is not None)
