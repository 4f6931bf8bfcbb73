"""SMART on FHIR scopes, v1 and v2 (SMART App Launch 2.x, "Scopes and Launch Context").

Resource scopes::

    v1   (patient|user|system)/(Type|*).(read|write|*)
    v2   (patient|user|system)/(Type|*).[c][r][u][d][s]           letters in that order, at least one
         ... optionally followed by ?param=value(&param=value)*   (a v2 filter, e.g. ?category=vital-signs)

Each v2 letter is one kind of interaction, enforced separately:

    c  create                 r  read, vread, instance history       u  update (and patch)
    d  delete                 s  search, type and system history

v1 ``read`` is ``rs``, ``write`` is ``cud`` and ``*`` is ``cruds``. ``patient/`` scopes confine the
caller to the compartment of the token's patient; ``user/`` and ``system/`` scopes do not. A filter
narrows a scope to the resources its search parameters match (AND across parameters, a comma
inside a value ORs, as in a FHIR search); several scopes granting the same access add up.

Non-resource scopes (``openid``, ``fhirUser``, ``profile``, ``launch``, ``launch/patient``,
``launch/encounter``, ``offline_access``, ``online_access``) are recognised and carry no resource access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

# One interaction letter (what an endpoint enforces), or the coarse v1 words: "read" asks whether
# some scope grants r or s, "write" whether some scope grants c, u or d (used where no single
# interaction applies, e.g. "may this token write Observations at all").
Permission = Literal["c", "r", "u", "d", "s"]
Access = Literal["c", "r", "u", "d", "s", "read", "write"]
Context = Literal["patient", "user", "system"]

LETTERS = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
NON_RESOURCE_SCOPES = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)
# Bounds: a scope string is an OAuth parameter anyone can send.
MAX_SCOPE_LENGTH = 512
MAX_SCOPES = 100
MAX_FILTER_PARAMS = 8

_SCOPE = re.compile(
    r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\."
    r"(?P<perm>read|write|\*|c?r?u?d?s?)(?:\?(?P<query>.*))?$"
)
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}(?::[A-Za-z\-]{1,32})?$")

# A filter: (param, value) pairs, ANDed; values keep FHIR search syntax (``system|code``, commas OR).
Filter = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Scope:
    """One resource scope: who (context), which type (``*``: any), which letters, which filter."""

    context: Context
    resource_type: str  # "*" for any type
    permissions: frozenset[str]
    filters: Filter = ()
    version: Literal[1, 2] = 2
    # The scope as requested (spelling kept when it is granted back).
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """Parse one SMART resource scope; None when it is not one (malformed, or openid, launch ...)."""
        if len(text) > MAX_SCOPE_LENGTH:
            return None
        m = _SCOPE.match(text)
        if not m:
            return None
        perm, query = m.group("perm"), m.group("query")
        if perm in V1_PERMISSIONS:
            if query is not None:  # filters are a v2 feature
                return None
            letters, version = V1_PERMISSIONS[perm], 1
        elif perm:
            letters, version = perm, 2
        else:
            return None
        filters: Filter = ()
        if query is not None:
            parsed = _parse_filter(query)
            if parsed is None:
                return None
            filters = parsed
        return cls(
            m.group("context"),  # type: ignore[arg-type]
            m.group("type"),
            frozenset(letters),
            filters,
            version,  # type: ignore[arg-type]
            text,
        )

    # Coarse views, kept for callers that ask "any read / any write".
    @property
    def read(self) -> bool:
        return bool(self.permissions & {"r", "s"})

    @property
    def write(self) -> bool:
        return bool(self.permissions & {"c", "u", "d"})

    @property
    def letters(self) -> str:
        """The permission letters in their canonical order (``rs``, ``cud`` ...)."""
        return "".join(c for c in LETTERS if c in self.permissions)

    def covers_type(self, resource_type: str) -> bool:
        return self.resource_type in ("*", resource_type)

    def grants(self, resource_type: str, access: Access) -> bool:
        """Whether this scope grants ``access`` on ``resource_type`` (ignoring its filter)."""
        if not self.covers_type(resource_type):
            return False
        if access == "read":
            return self.read
        if access == "write":
            return self.write
        return access in self.permissions

    def to_text(self, version: Literal[1, 2] | None = None) -> str:
        """This scope spelled as v1 (only when its letters are expressible in v1) or v2."""
        head = f"{self.context}/{self.resource_type}."
        if (version or self.version) == 1 and not self.filters:
            for word, letters in V1_PERMISSIONS.items():
                if self.permissions == frozenset(letters):
                    return head + word
        text = head + self.letters
        if self.filters:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.filters)
        return text


def _parse_filter(query: str) -> Filter | None:
    """``category=vital-signs&code=http://loinc.org|8867-4`` as ordered pairs; None when malformed."""
    if not query:
        return None
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        value = unquote(value)
        if not sep or not _PARAM_NAME.match(name) or not value or any(c.isspace() for c in value):
            return None
        pairs.append((name, value))
    if len(pairs) > MAX_FILTER_PARAMS:
        return None
    return tuple(pairs)


def split_scopes(text: str) -> list[str]:
    """The scope string's tokens, in order, without duplicates (at most :data:`MAX_SCOPES`)."""
    return list(dict.fromkeys(text.split()))[:MAX_SCOPES]


def parse_scopes(text: str) -> frozenset[Scope]:
    """The resource scopes of a scope string (non-resource and malformed ones are left out)."""
    return frozenset(s for s in (Scope.parse(t) for t in split_scopes(text)) if s is not None)


def is_non_resource_scope(text: str) -> bool:
    """``openid``, ``fhirUser``, ``launch/patient`` ...: a SMART scope that grants no resource access."""
    return text in NON_RESOURCE_SCOPES


def invalid_scopes(text: str) -> list[str]:
    """The requested scopes that are neither a well-formed resource scope nor a known non-resource scope,
    in request order (``patient/Observation.sr`` - letters out of order -, ``user/*.rx``, ``foo``)."""
    out = []
    for token in dict.fromkeys(text.split()):
        if not is_non_resource_scope(token) and Scope.parse(token) is None:
            out.append(token[:MAX_SCOPE_LENGTH])
    return out


# --- the grant: what an authorization server hands out ---------------------------------------------


def _filter_covers(registered: Filter, requested: Filter) -> bool:
    """Whether every resource ``requested``'s filter admits is admitted by ``registered``'s filter
    (conservatively: the registered conditions are among the requested ones)."""
    return set(registered) <= set(requested)


def _narrowed(requested: Scope, registered: Scope) -> Scope | None:
    """``requested`` narrowed to what ``registered`` allows, or None when they do not meet."""
    if requested.context != registered.context:
        return None
    if registered.resource_type == "*":
        rtype = requested.resource_type
    elif requested.resource_type in ("*", registered.resource_type):
        rtype = registered.resource_type
    else:
        return None
    letters = requested.permissions & registered.permissions
    if not letters:
        return None
    if _filter_covers(registered.filters, requested.filters):
        filters = requested.filters
    elif not requested.filters:
        filters = registered.filters
    else:
        # Both filtered, differently: their intersection is both sets of conditions (AND).
        filters = tuple(dict.fromkeys((*requested.filters, *registered.filters)))
        if len(filters) > MAX_FILTER_PARAMS:
            return None
    return Scope(requested.context, rtype, letters, filters, requested.version)


def scope_covers(outer: Scope, inner: Scope) -> bool:
    """Whether ``outer`` grants everything ``inner`` does (context, type, letters, filter)."""
    return (
        outer.context == inner.context
        and outer.covers_type(inner.resource_type)
        and (outer.resource_type == "*" or inner.resource_type != "*")
        and inner.permissions <= outer.permissions
        and _filter_covers(outer.filters, inner.filters)
    )


def grant_scopes(requested: str, registered: str) -> str:
    """The scopes to grant: ``requested`` ∩ what the client's ``registered`` scopes allow.

    Each requested scope keeps its version and spelling when the registration covers it (a v1
    request gets v1 back; ``patient/Observation.rs?category=vital-signs`` under a registered
    ``patient/*.read`` is granted as asked). A broader request is narrowed to the intersection where
    that is one scope per registered scope (``user/*.cruds`` under ``user/Observation.rs`` gives
    ``user/Observation.rs``; a v1 request narrowed to letters v1 cannot spell comes back as v2), and
    dropped where nothing of it is allowed. Non-resource scopes (``openid``, ``launch/patient`` ...)
    are granted when registered; malformed scopes never are. The result is space-separated, in
    request order, without duplicates or scopes another granted one already covers.
    """
    registered_words = split_scopes(registered)  # in registration order: a deterministic answer
    allowed_words = set(registered_words)
    allowed = [s for s in (Scope.parse(t) for t in registered_words) if s is not None]
    granted: list[str] = []
    kept: list[Scope] = []

    def add(text: str, scope: Scope | None) -> None:
        if text in granted:
            return
        if scope is not None:
            if any(scope_covers(k, scope) for k in kept):
                return
            kept.append(scope)
        granted.append(text)

    for token in split_scopes(requested):
        scope = Scope.parse(token)
        if scope is None:
            if is_non_resource_scope(token) and token in allowed_words:
                add(token, None)
            continue
        if any(scope_covers(a, scope) for a in allowed):
            add(token, scope)
            continue
        for a in allowed:
            narrowed = _narrowed(scope, a)
            if narrowed is not None:
                add(narrowed.to_text(), narrowed)
    # A scope granted early may be covered by one granted later: drop it.
    final = [t for t in granted if not _covered_by_other(t, granted)]
    return " ".join(final)


def _covered_by_other(text: str, granted: Iterable[str]) -> bool:
    scope = Scope.parse(text)
    if scope is None:
        return False
    for other in granted:
        if other == text:
            continue
        o = Scope.parse(other)
        if o is not None and scope_covers(o, scope) and not scope_covers(scope, o):
            return True
    return False
