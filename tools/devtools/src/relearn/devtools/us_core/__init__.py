"""Profile-aware checks of our FHIR output against the published US Core 6.1.0 StructureDefinitions.

``profiles/`` holds the few US Core 6.1.0 StructureDefinitions and ValueSets the services' resources are
checked against, copied unchanged from HL7/US-Core at tag ``6.1.0`` (``input/resources/``; the
ServiceRequest profile exists there only as
``input/resources-yaml/StructureDefinition-us-core-servicerequest.yml``, converted to JSON as is).
:func:`check` reads a profile's differential (base R4 cardinality is fhir.resources' to check) and reports,
as readable lines, everything a resource breaks:

- an element with ``min >= 1`` that is absent (for a nested element: absent in a parent that is present);
- a slice (``id`` with ``:``) with ``min >= 1`` that no repetition matches (by its pattern/fixed value, or
  by its required binding);
- a ``required`` binding a value is outside of (for a CodeableConcept: none of its codings is in the value
  set), an ``extensible`` binding no coding of the value is from (text alone passes, as extensible allows;
  US Core's value sets that are "all of SNOMED CT" or "is-a" filters are checked by code system: we do not
  expand SNOMED CT);
- a ``mustSupport`` element the resource does not populate, unless the caller names it in ``not_supported``
  with the reason (what we do not have);
- a missing ``meta.profile`` claim, when ``claim`` is true.

A binding to a value set the checker does not know is itself reported, so a new profile cannot pass unchecked.
Used by each service's tests (``tests/unit/test_us_core_profiles.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"

# FHIR R4's own value sets that US Core's required bindings name: each is its whole CodeSystem.
R4_VALUE_SETS: dict[str, tuple[str | None, frozenset[str]]] = {
    "http://hl7.org/fhir/ValueSet/request-status": (
        None,
        frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}),
    ),
    "http://hl7.org/fhir/ValueSet/care-plan-intent": (
        None,
        frozenset({"proposal", "plan", "order", "option"}),
    ),
    "http://hl7.org/fhir/ValueSet/goal-status": (
        None,
        frozenset(
            {
                "proposed",
                "planned",
                "accepted",
                "active",
                "on-hold",
                "completed",
                "cancelled",
                "entered-in-error",
                "rejected",
            }
        ),
    ),
    "http://hl7.org/fhir/ValueSet/event-status": (
        None,
        frozenset(
            {
                "preparation",
                "in-progress",
                "not-done",
                "on-hold",
                "stopped",
                "completed",
                "entered-in-error",
                "unknown",
            }
        ),
    ),
    "http://hl7.org/fhir/ValueSet/condition-clinical": (
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"}),
    ),
    "http://hl7.org/fhir/ValueSet/condition-ver-status": (
        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"}),
    ),
    # us-core-servicerequest-category includes it: R4's example value set of SNOMED CT categories.
    "http://hl7.org/fhir/ValueSet/servicerequest-category": (
        "http://snomed.info/sct",
        frozenset({"108252007", "363679005", "409063005", "409073007", "387713003"}),
    ),
}

# The local files by value set URL (each file is named after its id).
_VALUE_SET_FILES = {
    "http://hl7.org/fhir/us/core/ValueSet/us-core-narrative-status": "ValueSet-us-core-narrative-status",
    "http://hl7.org/fhir/us/core/ValueSet/us-core-simple-observation-category": (
        "ValueSet-us-core-simple-observation-category"
    ),
    "http://hl7.org/fhir/us/core/ValueSet/us-core-screening-assessment-observation-category": (
        "ValueSet-us-core-screening-assessment-observation-category"
    ),
    "http://hl7.org/fhir/us/core/ValueSet/us-core-servicerequest-category": (
        "valueset-us-core-servicerequest-category"
    ),
    "http://hl7.org/fhir/us/core/ValueSet/us-core-procedure-code": "valueset-us-core-procedure-code",
    "http://hl7.org/fhir/us/core/ValueSet/us-core-encounter-type": "valueset-us-core-encounter-type",
    "http://hl7.org/fhir/us/core/ValueSet/us-core-goal-description": "valueset-us-core-goal-description",
    "http://hl7.org/fhir/us/core/ValueSet/us-core-condition-code": "valueset-us-core-condition-code",
    "http://hl7.org/fhir/us/core/ValueSet/us-core-problem-or-health-concern": (
        "valueset-us-core-problem-or-health-concern"
    ),
}

# System -> the codes allowed from it (None: any code of the system).
Allowed = dict[str | None, frozenset[str] | None]


@cache
def load(name: str) -> dict[str, Any]:
    """A shipped file by name (without ``.json``)."""
    text = files("relearn.devtools.us_core").joinpath("profiles", f"{name}.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def structure_definition(profile: str) -> dict[str, Any]:
    """``us-core-careplan`` -> its StructureDefinition."""
    return load(f"StructureDefinition-{profile}")


def value_set(url: str) -> Allowed | None:
    """What a value set allows, by system; None when the checker does not know it."""
    url = url.split("|", 1)[0]
    if url in R4_VALUE_SETS:
        system, codes = R4_VALUE_SETS[url]
        return {system: codes}
    name = _VALUE_SET_FILES.get(url)
    if name is None:
        return None
    out: Allowed = {}
    for inc in load(name)["compose"]["include"]:
        for nested in inc.get("valueSet", []):
            inner = value_set(nested)
            if inner is None:
                return None
            out = _union(out, inner)
        if "system" not in inc:
            continue
        listed: frozenset[str] | None = (
            frozenset(c["code"] for c in inc["concept"]) if "concept" in inc and "filter" not in inc else None
        )
        out = _union(out, {inc["system"]: listed})
    return out


def _union(a: Allowed, b: Allowed) -> Allowed:
    out = dict(a)
    for system, codes in b.items():
        prior = out.get(system, frozenset())
        out[system] = None if codes is None or prior is None else prior | codes
    return out


def _in(allowed: Allowed, system: str | None, code: str) -> bool:
    if system is None:  # a primitive code: the value set's system is implied
        return any(codes is None or code in codes for codes in allowed.values())
    for s in (system, None):
        if s in allowed:
            codes = allowed[s]
            if codes is None or code in codes:
                return True
    return False


def codings(value: Any) -> list[tuple[str | None, str]]:
    """``(system, code)`` of a CodeableConcept, a Coding or a code."""
    if isinstance(value, str):
        return [(None, value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [(c.get("system"), str(c.get("code"))) for c in value["coding"] if "code" in c]
    if "code" in value:
        return [(value.get("system"), str(value["code"]))]
    return []


def _children(node: Any, part: str) -> list[Any]:
    nodes = node if isinstance(node, list) else [node]
    out: list[Any] = []
    for n in nodes:
        if not isinstance(n, dict):
            continue
        if part.endswith("[x]"):
            stem = part[:-3]
            found = [v for k, v in n.items() if k.startswith(stem) and k[len(stem) : len(stem) + 1].isupper()]
        else:
            found = [n[part]] if part in n else []
        for v in found:
            out.extend(v if isinstance(v, list) else [v])
    return out


def values_at(node: Any, path: list[str]) -> list[Any]:
    """Every value at ``path`` (element names, slice names dropped) under ``node``, lists flattened."""
    values = [node]
    for part in path:
        values = [c for v in values for c in _children(v, part)]
    return values


def _path(element_id: str) -> list[str]:
    return [p.split(":")[0] for p in element_id.split(".")[1:]]


def _slice_matches(element: dict[str, Any], value: Any) -> bool | None:
    """Whether ``value`` belongs to the slice ``element`` (None: the slice has no discriminator we read)."""
    pattern = next(
        (element[k] for k in element if k.startswith(("pattern", "fixed")) and isinstance(element[k], dict)),
        None,
    )
    if pattern is not None:
        return set(codings(pattern)) <= set(codings(value))
    binding = element.get("binding", {})
    if binding.get("strength") == "required":
        allowed = value_set(binding["valueSet"])
        if allowed is None:
            return None
        return any(_in(allowed, s, c) for s, c in codings(value))
    return None


def check(
    resource: dict[str, Any],
    profile: str,
    *,
    not_supported: Mapping[str, str] | None = None,
    claim: bool = True,
) -> list[str]:
    """Everything ``resource`` breaks of US Core ``profile`` (e.g. ``us-core-careplan``); empty if it
    conforms. ``not_supported`` names the mustSupport elements we do not populate, each with why."""
    sd = structure_definition(profile)
    skip = dict(not_supported or {})
    problems: list[str] = []
    if claim and sd["url"] not in resource.get("meta", {}).get("profile", []):
        problems.append(f"meta.profile does not claim {sd['url']}")
    for el in sd["differential"]["element"]:
        eid: str = el["id"]
        path = _path(eid)
        if not path:
            continue
        parents = values_at(resource, path[:-1])
        values = values_at(resource, path)
        last = eid.split(".")[-1]
        if ":" in last:  # a slice of the element
            matched = [m for v in values if (m := _slice_matches(el, v))]
            if el.get("min", 0) >= 1 and parents and len(matched) < el["min"]:
                problems.append(f"{eid}: no repetition matches the slice (min {el['min']})")
            if el.get("mustSupport") and not matched and eid not in skip and parents:
                problems.append(f"{eid}: mustSupport slice not populated")
            continue
        for parent in parents:
            present = _children(parent, path[-1])
            if el.get("min", 0) >= 1 and not present:
                problems.append(f"{eid} is required (min {el['min']})")
            if el.get("mustSupport") and not present and eid not in skip and el.get("min", 0) == 0:
                problems.append(f"{eid}: mustSupport element not populated")
        binding = el.get("binding", {})
        strength = binding.get("strength")
        if not values or strength not in ("required", "extensible"):
            continue
        allowed = value_set(binding["valueSet"])
        if allowed is None:
            problems.append(f"{eid}: the checker does not know {binding['valueSet']}")
            continue
        for v in values:
            found = codings(v)
            if strength == "extensible" and not found and isinstance(v, dict) and v.get("text"):
                continue  # extensible: text alone is allowed when no code of the value set fits
            if not any(_in(allowed, s, c) for s, c in found):
                problems.append(f"{eid}: {found} not in {strength} {binding['valueSet'].split('|')[0]}")
    return problems
