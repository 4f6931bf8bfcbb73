"""Search parameter declarations: a name, a kind and the element paths it indexes.

    token("code", "code")                                    # Coding/CodeableConcept/Identifier/code/boolean
    reference("patient", "subject", targets=("Patient",))    # only references to a Patient
    date("date", "effective[x]")                             # dateTime/Period/instant/Timing
    string("name", "name")                                   # HumanName/Address parts too
    quantity("value-quantity", "value[x]")
    number("probability", "prediction.probabilityDecimal")

Paths are dotted element names over the resource JSON (no leading type name). Every
resource type also gets the standard parameters in :data:`CONTROL_PARAMS` and ``_id``,
``_lastUpdated`` (read from the resource table, not declared here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ParamKind = Literal["token", "reference", "date", "string", "number", "quantity"]

_NAME = re.compile(r"^[a-z][a-z0-9\-]*$")

# Parameters about the result set rather than the resources; handled by the search itself.
CONTROL_PARAMS = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_total",
        "_elements",
        "_format",
        "_pretty",
        "_getpagesoffset",
    }
)

# Modifiers accepted per kind (":missing" is accepted for every kind).
MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not"}),
    "reference": frozenset(),  # plus ":<ResourceType>", checked against the targets
    "date": frozenset(),
    "string": frozenset({"exact", "contains"}),
    "number": frozenset(),
    "quantity": frozenset(),
}


@dataclass(frozen=True)
class SearchParam:
    """One search parameter of a resource type."""

    name: str
    kind: ParamKind
    paths: tuple[str, ...]
    # Reference parameters: the resource types a reference may point at (empty: any).
    targets: tuple[str, ...] = ()
    description: str = ""
    # Canonical URL of the SearchParameter this implements (for the CapabilityStatement).
    definition: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"search parameter name {self.name!r} must be lower-case kebab (a-z, 0-9, -)")
        if not self.paths:
            raise ValueError(f"search parameter {self.name!r} needs at least one element path")


def token(name: str, *paths: str, description: str = "", definition: str | None = None) -> SearchParam:
    """A token parameter: ``system|code``, ``code``, ``|code``, ``system|`` (and ``:not``)."""
    return SearchParam(name, "token", paths, description=description, definition=definition)


def reference(
    name: str,
    *paths: str,
    targets: tuple[str, ...] = (),
    description: str = "",
    definition: str | None = None,
) -> SearchParam:
    """A reference parameter: ``Type/id``, ``id`` or an absolute URL; ``targets`` limits the types."""
    return SearchParam(
        name, "reference", paths, targets=targets, description=description, definition=definition
    )


def date(name: str, *paths: str, description: str = "", definition: str | None = None) -> SearchParam:
    """A date parameter with prefixes eq ne lt le gt ge sa eb ap and implicit precision ranges."""
    return SearchParam(name, "date", paths, description=description, definition=definition)


def string(name: str, *paths: str, description: str = "", definition: str | None = None) -> SearchParam:
    """A string parameter: case- and accent-insensitive starts-with; ``:exact``, ``:contains``."""
    return SearchParam(name, "string", paths, description=description, definition=definition)


def number(name: str, *paths: str, description: str = "", definition: str | None = None) -> SearchParam:
    """A number parameter with prefixes; ``100`` means [99.5, 100.5)."""
    return SearchParam(name, "number", paths, description=description, definition=definition)


def quantity(name: str, *paths: str, description: str = "", definition: str | None = None) -> SearchParam:
    """A quantity parameter: ``[prefix]number|system|code`` (system and code optional)."""
    return SearchParam(name, "quantity", paths, description=description, definition=definition)
