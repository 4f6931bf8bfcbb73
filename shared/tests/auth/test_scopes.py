"""The SMART scope grammar (v1 and v2, filters), what a principal's scopes grant per interaction
letter, and :func:`grant_scopes` (request ∩ registration)."""

from __future__ import annotations

import pytest

from relearn.shared.auth import (
    Principal,
    Restriction,
    Scope,
    grant_scopes,
    invalid_scopes,
    is_non_resource_scope,
    parse_scopes,
)
from relearn.shared.fhir.errors import Forbidden


@pytest.mark.parametrize(
    ("text", "context", "rtype", "letters", "version"),
    [
        ("patient/Observation.read", "patient", "Observation", "rs", 1),
        ("user/*.write", "user", "*", "cud", 1),
        ("system/*.*", "system", "*", "cruds", 1),
        ("patient/Observation.rs", "patient", "Observation", "rs", 2),
        ("user/CarePlan.cruds", "user", "CarePlan", "cruds", 2),
        ("system/Patient.c", "system", "Patient", "c", 2),
        ("system/Patient.d", "system", "Patient", "d", 2),
        ("user/Encounter.cud", "user", "Encounter", "cud", 2),
        ("patient/*.s", "patient", "*", "s", 2),
        ("user/Observation.crd", "user", "Observation", "crd", 2),
    ],
)
def test_valid_resource_scopes(text: str, context: str, rtype: str, letters: str, version: int) -> None:
    scope = Scope.parse(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.letters, scope.version) == (
        context,
        rtype,
        letters,
        version,
    )
    assert scope.filters == ()
    assert scope.text == text
    assert invalid_scopes(text) == []


@pytest.mark.parametrize(
    ("text", "filters"),
    [
        ("patient/Observation.rs?category=vital-signs", (("category", "vital-signs"),)),
        (
            "patient/Observation.rs?code=http://loinc.org|8867-4",
            (("code", "http://loinc.org|8867-4"),),
        ),
        (
            "user/Observation.cruds?category=laboratory&status=final",
            (("category", "laboratory"), ("status", "final")),
        ),
        (
            "patient/Observation.r?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
            (("category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"),),
        ),
        ("system/Observation.s?code=a,b", (("code", "a,b"),)),
        ("system/Observation.s?code=%7Cx", (("code", "|x"),)),  # percent-encoded values are decoded
    ],
)
def test_v2_filters(text: str, filters: tuple[tuple[str, str], ...]) -> None:
    scope = Scope.parse(text)
    assert scope is not None and scope.version == 2
    assert scope.filters == filters


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rr",  # a letter twice
        "patient/Observation.x",
        "patient/Observation.",
        "patient/Observation",
        "patient/observation.read",  # a type starts with a capital
        "clinic/Observation.read",  # no such context
        "patient/Observation.read?category=vital-signs",  # filters are v2 only
        "patient/Observation.*?category=vital-signs",
        "patient/Observation.rs?",  # an empty filter
        "patient/Observation.rs?category=",  # an empty value
        "patient/Observation.rs?=vital-signs",  # no parameter name
        "patient/Observation.rs?category",  # no '='
        "patient/Observation.rs?category=a&",  # a dangling '&'
        "patient/Observation.readwrite",
        "patient/*.rs?" + "&".join(f"p{i}=v" for i in range(9)),  # too many filter parameters
        "patient/Observation.rs?category=" + "x" * 600,  # too long
        "patient/Obs-ervation.rs",
        "foo",
    ],
)
def test_invalid_scopes_are_reported(text: str) -> None:
    assert Scope.parse(text) is None
    assert invalid_scopes(f"openid {text} patient/Observation.rs") == [text[:512]]
    assert parse_scopes(text) == frozenset()


@pytest.mark.parametrize(
    "text",
    [
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    ],
)
def test_non_resource_scopes_are_recognised(text: str) -> None:
    assert is_non_resource_scope(text)
    assert Scope.parse(text) is None
    assert invalid_scopes(text) == []


def test_v1_words_are_letter_sets() -> None:
    read, write, star = (Scope.parse(f"user/Observation.{p}") for p in ("read", "write", "*"))
    assert read is not None and write is not None and star is not None
    assert read.permissions == frozenset("rs")
    assert write.permissions == frozenset("cud")
    assert star.permissions == frozenset("cruds")
    assert read.to_text() == "user/Observation.read"
    assert star.to_text(2) == "user/Observation.cruds"


def _principal(scope: str, patient: str | None = None, device: str | None = None) -> Principal:
    return Principal("sub", "client", parse_scopes(scope), patient=patient, device=device, raw_scope=scope)


@pytest.mark.parametrize("letter", list("cruds"))
def test_each_letter_grants_only_itself(letter: str) -> None:
    principal = _principal(f"user/Observation.{letter}")
    for other in "cruds":
        assert principal.allows("Observation", other) == (other == letter)  # type: ignore[arg-type]
        if other != letter:
            with pytest.raises(Forbidden):
                principal.require("Observation", other)  # type: ignore[arg-type]
    principal.require("Observation", letter)  # type: ignore[arg-type]
    assert not principal.allows("Patient", letter)  # type: ignore[arg-type]


def test_access_reports_patient_and_filters() -> None:
    p = _principal("patient/Observation.rs?category=vital-signs", patient="p1")
    assert p.access("Observation", "s") == Restriction("p1", ((("category", "vital-signs"),),))
    # Endpoints that cannot apply filters refuse a filtered-only grant.
    with pytest.raises(Forbidden, match="filtered"):
        p.require("Observation", "s")
    with pytest.raises(Forbidden):
        p.access("Observation", "c")


def test_union_of_scopes_unfiltered_wins() -> None:
    p = _principal("user/Observation.rs?category=vital-signs user/Observation.rs")
    assert p.access("Observation", "r") == Restriction(None, None)
    p.require("Observation", "r")


def test_union_of_filtered_scopes_is_their_alternatives() -> None:
    p = _principal("user/Observation.rs?category=vital-signs user/Observation.r?category=laboratory")
    assert p.access("Observation", "r").filters == (
        (("category", "laboratory"),),
        (("category", "vital-signs"),),
    )
    # Search is granted by the first only.
    assert p.access("Observation", "s").filters == ((("category", "vital-signs"),),)


def test_user_scopes_override_patient_scopes_without_widening() -> None:
    # A user/ scope grants the access across patients: its filter applies; the patient/ one adds nothing.
    p = _principal("user/Observation.rs?category=vital-signs patient/Observation.rs", patient="p1")
    assert p.access("Observation", "s") == Restriction(None, ((("category", "vital-signs"),),))
    # An unfiltered user/ scope on one letter, a patient/ one on another.
    q = _principal("user/Observation.r patient/Observation.s", patient="p1")
    assert q.access("Observation", "r") == Restriction(None, None)
    assert q.access("Observation", "s") == Restriction("p1", None)


def test_patient_scope_without_patient_claim_is_refused() -> None:
    with pytest.raises(Forbidden, match="patient"):
        _principal("patient/Observation.rs").access("Observation", "r")


def test_device_credentials_get_no_fhir_access() -> None:
    p = _principal("system/Observation.write", device="hub-1")
    assert p.may_ingest()
    for letter in "cruds":
        with pytest.raises(Forbidden, match="Device credentials"):
            p.require("Observation", letter)  # type: ignore[arg-type]


# --- grant_scopes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "registered", "granted"),
    [
        # Within the registration: as asked, in the request's version and spelling.
        ("system/Observation.read", "system/*.*", "system/Observation.read"),
        ("system/Observation.rs", "system/*.read", "system/Observation.rs"),
        (
            "patient/Observation.rs?category=vital-signs",
            "patient/*.read",
            "patient/Observation.rs?category=vital-signs",
        ),
        ("patient/Observation.r", "patient/Observation.read", "patient/Observation.r"),
        (
            "openid fhirUser launch/patient patient/*.read",
            "openid fhirUser launch/patient patient/*.*",
            "openid fhirUser launch/patient patient/*.read",
        ),
        # Broader than the registration: narrowed to the intersection.
        ("user/*.cruds", "user/Observation.rs", "user/Observation.rs"),
        ("user/*.read", "user/Observation.read user/Patient.read", "user/Observation.read user/Patient.read"),
        ("user/Observation.*", "user/Observation.read", "user/Observation.read"),
        ("user/Observation.read", "user/Observation.r", "user/Observation.r"),  # v1 cannot spell it
        (
            "patient/Observation.rs",
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs?category=vital-signs",
        ),
        (
            "patient/Observation.cruds?status=final",
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs?status=final&category=vital-signs",
        ),
        # Nothing allowed: dropped.
        ("system/*.write", "system/*.read", ""),
        ("patient/*.read", "user/*.read", ""),
        ("user/Patient.read", "user/Observation.read", ""),
        ("openid offline_access", "openid", "openid"),
        ("patient/Observation.sr user/*.read", "user/*.*", "user/*.read"),  # malformed: never granted
        ("custom-scope", "custom-scope", ""),  # only SMART scopes are granted
        # Duplicates and scopes another granted one covers collapse.
        ("user/*.read user/Observation.rs user/*.read", "user/*.*", "user/*.read"),
        ("user/Observation.rs user/*.read", "user/*.*", "user/*.read"),
    ],
)
def test_grant_scopes(requested: str, registered: str, granted: str) -> None:
    assert grant_scopes(requested, registered) == granted


def test_granted_scopes_parse_back() -> None:
    granted = grant_scopes(
        "user/*.cruds patient/Observation.rs?category=vital-signs", "user/Observation.rs patient/*.read"
    )
    assert invalid_scopes(granted) == []
    assert {s.to_text() for s in parse_scopes(granted)} == {
        "user/Observation.rs",
        "patient/Observation.rs?category=vital-signs",
    }
