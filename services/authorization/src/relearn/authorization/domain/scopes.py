"""The scopes granted for a request: what was asked for, within what the client is registered for.

The grammar (SMART v1 ``patient/Observation.read``, v2 ``patient/Observation.rs?category=vital-signs``) and
the intersection are the shared scope rules (``relearn.shared.auth``), the same ones every service enforces
with; this module keeps the issuer's bounds on the ``scope`` parameter and its list-shaped calls.
"""

from __future__ import annotations

from relearn.shared.auth import Scope, grant_scopes

MAX_SCOPES = 100
MAX_SCOPE_CHARS = 4096


def parse(text: str) -> Scope | None:
    """A SMART resource scope, or None for any other scope (including malformed resource-looking ones)."""
    return Scope.parse(text)


def split(scope: str) -> list[str]:
    """The scopes of a space-separated ``scope`` parameter, in order, without repeats (bounded)."""
    if len(scope) > MAX_SCOPE_CHARS:
        raise ValueError(f"the scope parameter is longer than {MAX_SCOPE_CHARS} characters")
    out = list(dict.fromkeys(scope.split()))
    if len(out) > MAX_SCOPES:
        raise ValueError(f"more than {MAX_SCOPES} scopes requested")
    return out


def grant(requested: list[str], allowed: list[str]) -> list[str]:
    """Requested ∩ registered (RFC 6749 §3.3: the answer says what was granted; what nothing covers is
    left out). v1 stays v1 where v1 can say it; a registered filter is added to the request's."""
    return grant_scopes(" ".join(requested), " ".join(allowed)).split()


def has_context(scopes: list[str], context: str) -> bool:
    return any((p := parse(s)) is not None and p.context == context for s in scopes)
