"""The canonical base of Relearn's own FHIR artefacts, spelled once.

CodeSystems (``{CANONICAL_URL}/CodeSystem/<slug>``), StructureDefinitions of our extensions
(``{CANONICAL_URL}/StructureDefinition/<slug>``) and identifier systems (``{CANONICAL_URL}/sid/<slug>``)
all live under it. It is a name, not an address anything is served from (the served FHIR base is each
deployment's ``*_FHIR_BASE_URL``). Shipped JSON artefacts (CodeSystem files) spell it as data.
"""

from __future__ import annotations

CANONICAL_URL = "https://relearn.health/fhir"


def code_system(slug: str) -> str:
    """``https://relearn.health/fhir/CodeSystem/<slug>``."""
    return f"{CANONICAL_URL}/CodeSystem/{slug}"


def structure_definition(slug: str) -> str:
    """``https://relearn.health/fhir/StructureDefinition/<slug>``: one of our extensions."""
    return f"{CANONICAL_URL}/StructureDefinition/{slug}"


def identifier_system(slug: str) -> str:
    """``https://relearn.health/fhir/sid/<slug>``: an identifier system of ours."""
    return f"{CANONICAL_URL}/sid/{slug}"
