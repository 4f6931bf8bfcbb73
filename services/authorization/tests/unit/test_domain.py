"""The issuer's pure rules: the scopes granted (request ∩ registration), PKCE S256."""

from __future__ import annotations

import pytest

from relearn.authorization.domain import pkce
from relearn.authorization.domain.scopes import grant, parse, split


@pytest.mark.parametrize(
    ("requested", "registered", "granted"),
    [
        # v1 stays v1 when v1 can say it
        ("system/Observation.read", "system/*.*", "system/Observation.read"),
        ("patient/*.read", "patient/*.rs", "patient/*.read"),
        # narrowed by the registration, in v2 letters when v1 cannot say it
        ("system/Observation.*", "system/*.read", "system/Observation.read"),
        ("system/Observation.write", "system/Observation.cr", "system/Observation.c"),
        ("system/Observation.cruds", "system/*.rs", "system/Observation.rs"),
        # a wildcard request gets the registered types
        (
            "system/*.rs",
            "system/Observation.read system/Patient.rs",
            "system/Observation.rs system/Patient.rs",
        ),
        # a registered filter is added
        (
            "patient/Observation.rs",
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs?category=vital-signs",
        ),
        # both filtered differently: both conditions (a resource must be in both categories)
        (
            "patient/Observation.rs?category=laboratory",
            "patient/Observation.rs?category=vital-signs",
            "patient/Observation.rs?category=laboratory&category=vital-signs",
        ),
        (
            "patient/Observation.rs?category=vital-signs",
            "patient/*.rs",
            "patient/Observation.rs?category=vital-signs",
        ),
        # contexts never cross
        ("user/Observation.read", "system/*.*", ""),
        # other scopes only as registered
        ("openid fhirUser launch/patient offline_access", "openid launch/patient", "openid launch/patient"),
        ("system/Observation.x", "system/*.*", ""),
    ],
)
def test_grant_is_the_request_within_the_registration(requested: str, registered: str, granted: str) -> None:
    assert " ".join(grant(split(requested), registered.split())) == granted


def test_parse_and_bounds() -> None:
    assert parse("system/Observation.rs") is not None
    assert parse("system/observation.rs") is None  # a type starts upper-case
    assert parse("system/Observation.sr") is None  # letters in cruds order
    with pytest.raises(ValueError):
        split("system/*.rs " * 1000)
    with pytest.raises(ValueError):
        split(" ".join(f"system/T{i}.rs" for i in range(101)))


def test_pkce_is_s256_only() -> None:
    verifier = "a" * 43
    challenge = pkce.challenge_of(verifier)
    assert pkce.valid_challenge(challenge, "S256") is None
    assert pkce.valid_challenge(verifier, "plain") is not None
    assert pkce.valid_challenge(None, "S256") is not None
    assert pkce.verifier_matches(verifier, challenge)
    assert not pkce.verifier_matches("b" * 43, challenge)
    assert not pkce.verifier_matches("short", pkce.challenge_of("short"))
