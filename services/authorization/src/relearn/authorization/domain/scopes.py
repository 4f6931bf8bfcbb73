"""The scopes granted for a request: what was asked for, within what the client is registered for.

SMART v1 (``patient/Observation.read``) and v2 (``patient/Observation.rs?category=vital-signs``) resource
scopes; a granted scope keeps the version it was requested in (v1 stays v1) when the version can say it.
Other scopes (``openid``, ``fhirUser``, ``launch``, ``launch/patient``, ``offline_access`` ...) are granted
when the client's registration lists them as they are.

(The shared scope grammar will replace :func:`parse` at merge; the intersection stays a rule of the issuer.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RESOURCE_SCOPE = re.compile(
    r"^(patient|user|system)/([A-Z][A-Za-z]{0,63}|\*)\.(read|write|\*|c?r?u?d?s?)(\?[^\s?#]{1,512})?$"
)
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
_ORDER = "cruds"
MAX_SCOPES = 100
MAX_SCOPE_CHARS = 4096


@dataclass(frozen=True)
class ResourceScope:
    context: str
    resource_type: str
    permissions: frozenset[str]
    v1: bool
    query: str | None = None

    def render(self) -> str:
        perms: str | None = None
        if self.v1:
            for word, letters in _V1.items():
                if letters == self.permissions:
                    perms = word
        if perms is None:  # not sayable in v1 (or asked in v2): v2 letters
            perms = "".join(c for c in _ORDER if c in self.permissions)
        query = f"?{self.query}" if self.query else ""
        return f"{self.context}/{self.resource_type}.{perms}{query}"


def parse(text: str) -> ResourceScope | None:
    """A SMART resource scope, or None for any other scope (including malformed resource-looking ones)."""
    m = _RESOURCE_SCOPE.match(text)
    if m is None:
        return None
    context, rtype, perm, query = m.groups()
    if not perm:
        return None
    if perm in _V1:
        return ResourceScope(context, rtype, _V1[perm], True, query[1:] if query else None)
    return ResourceScope(context, rtype, frozenset(perm), False, query[1:] if query else None)


def split(scope: str) -> list[str]:
    """The scopes of a space-separated ``scope`` parameter, in order, without repeats (bounded)."""
    if len(scope) > MAX_SCOPE_CHARS:
        raise ValueError(f"the scope parameter is longer than {MAX_SCOPE_CHARS} characters")
    out = list(dict.fromkeys(scope.split()))
    if len(out) > MAX_SCOPES:
        raise ValueError(f"more than {MAX_SCOPES} scopes requested")
    return out


def _meet(requested: ResourceScope, allowed: ResourceScope) -> ResourceScope | None:
    if requested.context != allowed.context:
        return None
    if requested.resource_type == "*" or allowed.resource_type == "*":
        rtype = allowed.resource_type if requested.resource_type == "*" else requested.resource_type
    elif requested.resource_type == allowed.resource_type:
        rtype = requested.resource_type
    else:
        return None
    permissions = requested.permissions & allowed.permissions
    if not permissions:
        return None
    if requested.query and allowed.query and requested.query != allowed.query:
        return None
    return ResourceScope(
        requested.context,
        rtype,
        permissions,
        requested.v1,
        requested.query or allowed.query,
    )


def grant(requested: list[str], allowed: list[str]) -> list[str]:
    """Requested ∩ registered: each requested scope narrowed to what a registered one allows (a wildcard
    type or wider permissions registered give exactly what was asked; narrower ones narrow it; a registered
    filter is added). Scopes nothing covers are left out (RFC 6749 §3.3: the answer says what was granted)."""
    allowed_resource = [p for p in (parse(a) for a in allowed) if p is not None]
    allowed_other = {a for a in allowed if parse(a) is None}
    granted: list[str] = []
    for text in requested:
        asked = parse(text)
        if asked is None:
            if text in allowed_other:
                granted.append(text)
            continue
        for candidate in allowed_resource:
            met = _meet(asked, candidate)
            if met is not None:
                granted.append(met.render())
    return list(dict.fromkeys(granted))


def has_context(scopes: list[str], context: str) -> bool:
    return any((p := parse(s)) is not None and p.context == context for s in scopes)
