"""JwtVerifier: real tokens from the development issuer, verified against its published JWKS."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from relearn.dev_issuer import DevIssuer, dev_token_router
from relearn.shared.auth.keys import JwksCache, load_jwks
from relearn.shared.auth.scopes import Scope
from relearn.shared.auth.tokens import JwtVerifier, verifier_from_settings
from relearn.shared.fhir.errors import FhirError, Unauthorized
from relearn.shared.settings import ServiceSettings

from .conftest import AUDIENCE, ISSUER, Signer


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "relearn-dev",
        "iat": now,
        "exp": now + 600,
        "scope": "system/Observation.read",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _rejected(verifier: JwtVerifier, token: str) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        verifier.verify(token)
    err = info.value
    assert err.status_code == 401
    header = err.headers["WWW-Authenticate"]
    assert header.startswith('Bearer error="invalid_token", error_description="')
    return err


def test_valid_token_becomes_the_principal(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    token = issuer.mint("relearn-dev", "system/Device.read system/Observation.write")

    principal = verifier.verify(token)

    assert principal.subject == "relearn-dev"
    assert principal.client_id == "relearn-dev"
    assert principal.device is None
    assert principal.patient is None
    assert principal.scopes == {
        Scope("system", "Device", frozenset("rs"), version=1),
        Scope("system", "Observation", frozenset("cud"), version=1),
    }
    assert principal.allows("Observation", "write")
    assert not principal.allows("Observation", "read")


def test_a_device_token_grants_ingest_only(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    """Whatever scopes a device credential lists, it reads and writes nothing but its frames."""
    principal = verifier.verify(issuer.mint("device-gateway-dev", "system/Observation.write"))

    assert principal.device == "relearn-dev-hub"  # the device the client was registered with
    assert principal.may_ingest()
    assert not principal.allows("Observation", "write")
    with pytest.raises(FhirError) as refused:
        principal.require("Observation", "write")
    assert refused.value.status_code == 403
    assert "Device credentials" in str(refused.value)


def test_the_principal_carries_the_token_expiry(sign: Signer, verifier: JwtVerifier) -> None:
    now = int(time.time())
    principal = verifier.verify(sign(_claims(exp=now + 600)))
    assert principal.expires_at == datetime.fromtimestamp(now + 600, UTC)
    assert not principal.expired()
    # Within the verifier's clock-skew leeway the token still verifies, but it has expired.
    late = verifier.verify(sign(_claims(exp=now - 10)))
    assert late.expired() and (late.seconds_left() or 0) < 0


def test_patient_scoped_token_is_restricted_to_its_patient(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    principal = verifier.verify(issuer.mint("relearn-dev", "patient/*.read", patient="pat-42"))

    assert principal.patient == "pat-42"
    assert principal.patient_restriction("Observation", "read") == "pat-42"
    assert not principal.allows("Observation", "write")


def test_rs256_tokens_verify_too(tmp_path: Path, issuer: DevIssuer) -> None:
    rsa_issuer = DevIssuer(tmp_path / "rsa", ISSUER, AUDIENCE, issuer.clients, key_type="RSA")
    verifier = JwtVerifier(load_jwks(str(rsa_issuer.publish())), issuer=ISSUER, audience=AUDIENCE)
    token = rsa_issuer.mint("ehr-demo", "system/*.read")
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "RS256"

    assert verifier.verify(token).client_id == "ehr-demo"


def test_expired_token_is_rejected(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    err = _rejected(verifier, issuer.mint("ehr-demo", "system/*.read", ttl_s=-120))
    assert "expired" in err.issues[0].diagnostics
    assert "expired" in err.headers["WWW-Authenticate"]


def test_clock_skew_within_leeway_is_tolerated(sign: Signer, verifier: JwtVerifier) -> None:
    now = int(time.time())
    assert verifier.verify(sign(_claims(exp=now - 10, iat=now + 10, nbf=now + 10))).subject == "relearn-dev"


def test_token_not_yet_valid_is_rejected(sign: Signer, verifier: JwtVerifier) -> None:
    _rejected(verifier, sign(_claims(nbf=int(time.time()) + 3600)))


def test_wrong_issuer_is_rejected(sign: Signer, verifier: JwtVerifier) -> None:
    err = _rejected(verifier, sign(_claims(iss="https://evil.example/auth")))
    assert "issuer" in err.issues[0].diagnostics


def test_wrong_audience_is_rejected(sign: Signer, verifier: JwtVerifier) -> None:
    err = _rejected(verifier, sign(_claims(aud="another-api")))
    assert "audience" in err.issues[0].diagnostics


def test_audience_list_containing_ours_is_accepted(sign: Signer, verifier: JwtVerifier) -> None:
    assert verifier.verify(sign(_claims(aud=["another-api", AUDIENCE]))).subject == "relearn-dev"


def test_missing_expiry_is_rejected(sign: Signer, verifier: JwtVerifier) -> None:
    _rejected(verifier, sign(_claims(exp=None)))


def test_token_from_another_issuers_key_is_rejected(
    tmp_path: Path, issuer: DevIssuer, verifier: JwtVerifier
) -> None:
    impostor = DevIssuer(tmp_path / "impostor", ISSUER, AUDIENCE, issuer.clients)
    err = _rejected(verifier, impostor.mint("relearn-dev", "system/*.*"))
    assert "no signing key" in err.issues[0].diagnostics


def test_forged_signature_under_our_kid_is_rejected(
    tmp_path: Path, issuer: DevIssuer, verifier: JwtVerifier
) -> None:
    impostor = DevIssuer(tmp_path / "impostor", ISSUER, AUDIENCE, issuer.clients)
    impostor.publish()
    their_key = json.loads(impostor.key_path.read_text())
    our_kid = issuer.public_jwks()["keys"][0]["kid"]
    forged = jwt.encode({"alg": "ES256", "kid": our_kid}, _claims(), ECKey.import_key(their_key))

    err = _rejected(verifier, forged)
    assert "signature" in err.issues[0].diagnostics


def test_tampered_payload_is_rejected(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    header, _, signature = issuer.mint("ehr-demo", "system/*.read").split(".")
    escalated = _b64(_claims(sub="ehr-demo", scope="system/*.*"))
    _rejected(verifier, f"{header}.{escalated}.{signature}")


def test_alg_none_is_refused(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    kid = issuer.public_jwks()["keys"][0]["kid"]
    unsigned = f"{_b64({'alg': 'none', 'kid': kid})}.{_b64(_claims())}."
    err = _rejected(verifier, unsigned)
    assert "'none' is not accepted" in err.issues[0].diagnostics


def test_hmac_signed_with_the_public_key_is_refused(issuer: DevIssuer, verifier: JwtVerifier) -> None:
    # The classic key-confusion attack: HS256 keyed with the (public) JWKS text.
    public_text = issuer.jwks_path.read_bytes()
    token = jwt.encode({"alg": "HS256"}, _claims(), OctKey.import_key(public_text), algorithms=["HS256"])
    err = _rejected(verifier, token)
    assert "HS256" in err.issues[0].diagnostics


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9.%%%.@@", "é.é.é"])
def test_garbage_is_rejected(verifier: JwtVerifier, garbage: str) -> None:
    _rejected(verifier, garbage)


def test_description_in_header_stays_a_valid_quoted_string(sign: Signer, verifier: JwtVerifier) -> None:
    err = _rejected(verifier, sign(_claims(iss='x", error="hijack\\')))
    description = err.headers["WWW-Authenticate"].split('error_description="', 1)[1]
    assert description.endswith('"')
    assert '"' not in description[:-1] and "\\" not in description


def test_client_id_falls_back_to_azp_then_sub(sign: Signer, verifier: JwtVerifier) -> None:
    assert verifier.verify(sign(_claims(azp="dashboard"))).client_id == "dashboard"
    assert verifier.verify(sign(_claims())).client_id == "relearn-dev"


def test_jwks_served_by_the_token_router_over_http(issuer: DevIssuer) -> None:
    app = FastAPI()
    app.include_router(dev_token_router(issuer))
    with TestClient(app) as http:
        keys = load_jwks("http://testserver/auth/jwks.json", client=http)
        verifier = JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
        assert verifier.verify(issuer.mint("ehr-demo", "system/*.read")).subject == "ehr-demo"


def test_rotated_key_is_picked_up_and_refreshes_are_rate_limited(tmp_path: Path, issuer: DevIssuer) -> None:
    fetches = 0
    app = FastAPI()
    current = {"issuer": issuer}

    @app.get("/jwks.json")
    def jwks() -> dict[str, object]:
        nonlocal fetches
        fetches += 1
        return current["issuer"].public_jwks()

    now = [1000.0]
    with TestClient(app) as http:
        cache = JwksCache(
            "http://testserver/jwks.json", client=http, min_refresh_interval_s=60, clock=lambda: now[0]
        )
        verifier = JwtVerifier(cache, issuer=ISSUER, audience=AUDIENCE)
        assert verifier.verify(issuer.mint("ehr-demo", "system/*.read")).subject == "ehr-demo"
        assert fetches == 1

        rotated = DevIssuer(tmp_path / "rotated", ISSUER, AUDIENCE, issuer.clients)
        current["issuer"] = rotated
        new_token = rotated.mint("ehr-demo", "system/*.read")

        # Too soon after the last fetch: the unknown kid does not trigger another fetch.
        now[0] += 5
        _rejected(verifier, new_token)
        assert fetches == 1

        now[0] += 60
        assert verifier.verify(new_token).subject == "ehr-demo"
        assert fetches == 2


def test_service_may_start_before_the_issuer_publishes(tmp_path: Path, issuer: DevIssuer) -> None:
    jwks_file = tmp_path / "later" / "jwks.json"
    now = [0.0]
    verifier = JwtVerifier(JwksCache(str(jwks_file), clock=lambda: now[0]), issuer=ISSUER, audience=AUDIENCE)
    token = issuer.mint("ehr-demo", "system/*.read")
    err = _rejected(verifier, token)
    assert "could not be loaded" in err.issues[0].diagnostics

    jwks_file.parent.mkdir()
    jwks_file.write_bytes(issuer.jwks_path.read_bytes())
    now[0] += 2
    assert verifier.verify(token).subject == "ehr-demo"


def test_verifier_from_settings(issuer: DevIssuer) -> None:
    settings = ServiceSettings(auth_jwks=str(issuer.publish()), auth_issuer=ISSUER, auth_audience=AUDIENCE)
    verifier = verifier_from_settings(settings)
    assert verifier.verify(issuer.mint("ehr-demo", "system/*.read")).subject == "ehr-demo"

    with pytest.raises(ValueError, match="AUTH_JWKS"):
        verifier_from_settings(ServiceSettings(auth_jwks="", environment="production"))


def test_production_verifies_tokens_of_the_external_issuers_jwks(issuer: DevIssuer) -> None:
    """In production the keys come from the configured identity provider's jwks_uri, nothing else."""
    idp_key = RSAKey.generate_key(2048, auto_kid=True)
    public = {**idp_key.as_dict(private=False), "kid": idp_key.kid, "use": "sig", "alg": "RS256"}
    fetched: list[str] = []

    def jwks_endpoint(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, json={"keys": [public]})

    settings = ServiceSettings(
        environment="production",
        auth_jwks="https://idp.clinic.example/.well-known/jwks.json",
        auth_issuer="https://idp.clinic.example",
        auth_audience="relearn",
    )
    client = httpx.Client(transport=httpx.MockTransport(jwks_endpoint))
    verifier = verifier_from_settings(settings, client=client)
    now = int(time.time())
    claims = {
        "iss": "https://idp.clinic.example",
        "aud": "relearn",
        "sub": "ehr-1",
        "exp": now + 300,
        "iat": now,
        "scope": "system/Observation.read",
    }
    token = jwt.encode({"alg": "RS256", "kid": idp_key.kid}, claims, idp_key, algorithms=["RS256"])
    principal = verifier.verify(token)
    assert principal.subject == "ehr-1" and principal.allows("Observation", "read")
    assert fetched == ["https://idp.clinic.example/.well-known/jwks.json"]
    # The development issuer's tokens are not accepted there, even with the right claims.
    dev = issuer.mint("relearn-dev", "system/*.*")
    with pytest.raises(Unauthorized):
        verifier.verify(dev)


def test_the_fhir_user_claim_names_the_user(sign: Signer, verifier: JwtVerifier) -> None:
    """An App Launch token's ``fhirUser`` is who audit and Provenance name; a malformed one is refused."""
    principal = verifier.verify(sign(_claims(fhirUser="Practitioner/therapist-1")))
    assert principal.fhir_user == "Practitioner/therapist-1"
    assert verifier.verify(sign(_claims())).fhir_user is None
    with pytest.raises(Unauthorized):
        verifier.verify(sign(_claims(fhirUser=["Practitioner/x"])))


def test_a_remembered_token_still_expires_and_is_checked_again_after_a_minute(
    issuer: DevIssuer, sign: Signer
) -> None:
    """Issue 16: a verified signature is remembered (keyed by the token), but the claim checks run on every
    call and the signature is checked again once the entry is older than a minute."""
    now = [time.time()]
    verifier = JwtVerifier(str(issuer.publish()), issuer=ISSUER, audience=AUDIENCE, clock=lambda: now[0])
    token = sign(_claims(exp=int(now[0]) + 90))
    assert verifier.verify(token).subject == "relearn-dev"
    assert verifier.verify(token).subject == "relearn-dev"  # from the cache
    calls = 0
    real = verifier._verify_signature

    def counting(text: str) -> dict[str, object]:
        nonlocal calls
        calls += 1
        return real(text)

    verifier._verify_signature = counting  # type: ignore[method-assign]
    now[0] += 30
    verifier.verify(token)
    assert calls == 0  # remembered
    now[0] += 40  # the entry is 70 s old: verified again
    verifier.verify(token)
    assert calls == 1
    now[0] += 100  # past exp (and the leeway): refused although the signature is remembered
    err = _rejected(verifier, token)
    assert "expired" in err.issues[0].diagnostics
