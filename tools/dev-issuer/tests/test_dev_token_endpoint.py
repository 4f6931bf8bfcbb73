"""The development issuer: key files, client registry, and the OAuth2 token endpoint over HTTP."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from relearn.dev_issuer import (
    ClientRegistry,
    DevIssuer,
    RegisteredClient,
    TokenRequestError,
    default_clients_file,
    dev_token_router,
    hash_secret,
)
from relearn.shared.auth import JwtVerifier, load_jwks

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "relearn"

TOKEN_URL = "/auth/token"


@pytest.fixture
def http(issuer: DevIssuer) -> Iterator[TestClient]:
    app = FastAPI()
    app.include_router(dev_token_router(issuer))
    with TestClient(app) as client:
        yield client


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _published_verifier(issuer: DevIssuer) -> JwtVerifier:
    return JwtVerifier(load_jwks(str(issuer.jwks_path)), issuer=ISSUER, audience=AUDIENCE)


# --- keys -------------------------------------------------------------------------------------


def test_key_is_created_private_and_jwks_is_public(issuer: DevIssuer) -> None:
    issuer.publish()

    assert stat.S_IMODE(issuer.key_path.stat().st_mode) == 0o600
    assert "d" in json.loads(issuer.key_path.read_text())
    published = json.loads(issuer.jwks_path.read_text())
    [key] = published["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert "d" not in key


def test_key_survives_a_restart(issuer: DevIssuer) -> None:
    token = issuer.mint("ehr-demo", "system/*.read")
    restarted = DevIssuer(issuer.key_dir, ISSUER, AUDIENCE, issuer.clients)

    assert restarted.public_jwks() == issuer.public_jwks()
    # Tokens minted before the restart still verify against what the restarted issuer publishes.
    assert _published_verifier(restarted).verify(token).subject == "ehr-demo"


def test_deleted_jwks_is_republished(issuer: DevIssuer) -> None:
    issuer.publish()
    issuer.jwks_path.unlink()
    issuer.publish()
    assert json.loads(issuer.jwks_path.read_text()) == issuer.public_jwks()


# --- client registry --------------------------------------------------------------------------


def test_hashed_and_plain_secrets() -> None:
    registry = ClientRegistry(
        [
            RegisteredClient(
                "hashed", ("system/*.read",), client_secret_hash=hash_secret("s3cret", iterations=1000)
            ),
            RegisteredClient("plain", ("system/*.read",), client_secret="pw"),
        ]
    )
    assert registry.authenticate("hashed", "s3cret").client_id == "hashed"
    assert registry.authenticate("plain", "pw").client_id == "plain"
    for client_id, secret in [("hashed", "s3cret!"), ("plain", "PW"), ("nobody", "pw")]:
        with pytest.raises(TokenRequestError) as info:
            registry.authenticate(client_id, secret)
        assert (info.value.error, info.value.status_code) == ("invalid_client", 401)


def test_registry_refuses_ambiguous_or_invalid_entries() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        RegisteredClient("x", ("system/*.read",))
    with pytest.raises(ValueError, match="not a SMART scope"):
        RegisteredClient("x", ("system/*.everything",), client_secret="s")
    with pytest.raises(ValueError, match="twice"):
        ClientRegistry(
            [RegisteredClient("x", (), client_secret="a"), RegisteredClient("x", (), client_secret="b")]
        )


@pytest.mark.parametrize(
    ("allowed", "requested", "ok"),
    [
        ("system/*.*", "system/Observation.read", True),
        ("system/*.*", "system/CarePlan.write system/Patient.read", True),
        ("system/*.read", "system/Observation.write", False),
        ("system/*.read", "system/Observation.*", False),
        ("system/*.read", "system/Observation.rs", True),
        ("system/Observation.read", "system/CarePlan.read", False),
        ("system/*.*", "user/Observation.read", False),
        ("patient/*.read", "system/Observation.read", False),
        ("system/*.read", "openid", False),
        # SMART v2: letters and filters within a v1 or v2 registration.
        ("user/*.read", "user/Observation.rs?category=vital-signs", True),
        ("user/*.*", "user/Observation.cruds?code=http://loinc.org|8867-4", True),
        ("user/Observation.rs", "user/Observation.r user/Observation.s", True),
        (
            "user/Observation.rs?category=vital-signs",
            "user/Observation.rs?category=vital-signs&status=final",
            True,
        ),
        ("user/Observation.rs?category=vital-signs", "user/Observation.rs", False),
        ("user/Observation.rs", "user/Observation.rsd", False),
        ("user/*.*", "user/Observation.sr", False),  # letters out of order: not a scope
        ("openid fhirUser launch/patient user/*.read", "openid fhirUser launch/patient", True),
    ],
)
def test_requested_scope_must_fall_within_an_allowed_pattern(allowed: str, requested: str, ok: bool) -> None:
    client = RegisteredClient("c", tuple(allowed.split()), client_secret="s")
    if ok:
        assert client.grant(requested) == requested
    else:
        with pytest.raises(TokenRequestError) as info:
            client.grant(requested)
        assert info.value.error == "invalid_scope"


# --- token endpoint ---------------------------------------------------------------------------


def test_right_secret_gets_a_token_that_verifies_against_the_published_jwks(
    http: TestClient, issuer: DevIssuer
) -> None:
    response = http.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_id": "relearn-dev",
            "client_secret": "dev-secret",
            "scope": "system/Observation.read system/CarePlan.write",
        },
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "system/Observation.read system/CarePlan.write"

    keys = load_jwks("http://testserver/auth/jwks.json", client=http)
    principal = JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE).verify(body["access_token"])
    assert principal.client_id == "relearn-dev"
    assert principal.allows("Observation", "read")
    assert principal.allows("CarePlan", "write")
    assert not principal.allows("Observation", "write")


def test_http_basic_with_a_hashed_secret(http: TestClient, issuer: DevIssuer) -> None:
    response = http.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "system/*.read"},
        headers=_basic("ehr-demo", "ehr-demo-secret"),
    )
    assert response.status_code == 200, response.text
    assert _published_verifier(issuer).verify(response.json()["access_token"]).client_id == "ehr-demo"


@pytest.mark.parametrize(
    ("client_id", "secret"), [("relearn-dev", "wrong"), ("ehr-demo", "dev-secret"), ("nobody", "dev-secret")]
)
def test_wrong_credentials_are_invalid_client(http: TestClient, client_id: str, secret: str) -> None:
    form = {"grant_type": "client_credentials", "scope": "system/*.read"}
    for response in (
        http.post(TOKEN_URL, data={**form, "client_id": client_id, "client_secret": secret}),
        http.post(TOKEN_URL, data=form, headers=_basic(client_id, secret)),
    ):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert "access_token" not in response.json()
        assert response.headers["www-authenticate"].startswith("Basic")


def test_missing_client_credentials_are_invalid_client(http: TestClient) -> None:
    response = http.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.read"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scope_outside_the_clients_allowed_is_invalid_scope(http: TestClient) -> None:
    response = http.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "system/Observation.write"},
        headers=_basic("ehr-demo", "ehr-demo-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"
    assert "system/Observation.write" in response.json()["error_description"]


def test_missing_scope_is_invalid_scope(http: TestClient) -> None:
    response = http.post(
        TOKEN_URL, data={"grant_type": "client_credentials"}, headers=_basic("relearn-dev", "dev-secret")
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_patient_scope_needs_a_patient(http: TestClient, issuer: DevIssuer) -> None:
    form = {"grant_type": "client_credentials", "scope": "patient/*.read"}
    auth = _basic("relearn-dev", "dev-secret")

    without = http.post(TOKEN_URL, data=form, headers=auth)
    assert without.status_code == 400
    assert without.json()["error"] == "invalid_request"
    assert "patient" in without.json()["error_description"]

    with_patient = http.post(TOKEN_URL, data={**form, "patient": "pat-1"}, headers=auth)
    assert with_patient.status_code == 200
    principal = _published_verifier(issuer).verify(with_patient.json()["access_token"])
    assert principal.patient_restriction("Observation", "read") == "pat-1"


def test_device_claim_only_for_device_clients(http: TestClient, issuer: DevIssuer) -> None:
    form = {"grant_type": "client_credentials", "scope": "system/Observation.write"}
    hub = _basic("device-gateway-dev", "device-gateway-secret")
    gateway = http.post(TOKEN_URL, data={**form, "device": "relearn-dev-hub"}, headers=hub)
    assert gateway.status_code == 200, gateway.text
    assert _published_verifier(issuer).verify(gateway.json()["access_token"]).device == "relearn-dev-hub"
    # Without a device parameter, the client's one registered device: never a token without the claim.
    implied = http.post(TOKEN_URL, data=form, headers=hub)
    assert _published_verifier(issuer).verify(implied.json()["access_token"]).device == "relearn-dev-hub"
    # One hub's secret cannot claim another hub.
    other = http.post(TOKEN_URL, data={**form, "device": "board-3"}, headers=hub)
    assert other.status_code == 400
    assert other.json()["error"] == "invalid_request"
    assert "not registered" in other.json()["error_description"]
    # Registering the device with the client (an operator's act) is what lets it claim it.
    issuer.clients.register_device("device-gateway-dev", "board-3")
    assert http.post(TOKEN_URL, data={**form, "device": "board-3"}, headers=hub).status_code == 200

    ehr = http.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "system/*.read", "device": "board-3"},
        headers=_basic("ehr-demo", "ehr-demo-secret"),
    )
    assert ehr.status_code == 400
    assert ehr.json()["error"] == "invalid_request"


def test_other_grant_types_are_unsupported(http: TestClient) -> None:
    response = http.post(
        TOKEN_URL,
        data={"grant_type": "password", "username": "u", "password": "p", "scope": "system/*.read"},
        headers=_basic("relearn-dev", "dev-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_json_body_is_an_invalid_request(http: TestClient) -> None:
    response = http.post(
        TOKEN_URL,
        json={"grant_type": "client_credentials", "client_id": "relearn-dev", "client_secret": "dev-secret"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_repeated_parameters_are_an_invalid_request(http: TestClient) -> None:
    response = http.post(
        TOKEN_URL,
        content="grant_type=client_credentials&scope=system/*.read&scope=system/*.*",
        headers={"Content-Type": "application/x-www-form-urlencoded", **_basic("relearn-dev", "dev-secret")},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_smart_configuration_points_at_the_token_endpoint(http: TestClient) -> None:
    config = http.get("/.well-known/smart-configuration").json()

    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["jwks_uri"] == "http://testserver/auth/jwks.json"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert set(config["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert "system/*.read" in config["scopes_supported"]
    assert {"permission-v1", "permission-v2"} <= set(config["capabilities"])


def test_token_endpoint_is_documented_as_a_form(http: TestClient) -> None:
    operation = http.get("/openapi.json").json()["paths"]["/auth/token"]["post"]
    assert "application/x-www-form-urlencoded" in operation["requestBody"]["content"]


def test_shipped_clients_file_is_found_by_default() -> None:
    ids = {c.client_id for c in ClientRegistry.from_file(default_clients_file())}
    assert ids == {"relearn-dev", "ehr-demo", "device-gateway-dev"}


def test_launcher_keys_are_the_ones_the_issuer_signs_with(tmp_path: Path, clients: ClientRegistry) -> None:
    # `make run` publishes the JWKS before any service (or the front door) starts.
    jwks_path = DevIssuer.ensure_keys(tmp_path / "dev-issuer")
    verifier = JwtVerifier(load_jwks(str(jwks_path)), issuer=ISSUER, audience=AUDIENCE)

    later = DevIssuer(tmp_path / "dev-issuer", ISSUER, AUDIENCE, clients)
    assert verifier.verify(later.mint("ehr-demo", "system/*.read")).client_id == "ehr-demo"


@dataclass
class _FrontDoorLikeSettings:
    dev_issuer_url: str
    dev_key_dir: Path
    dev_clients_file: Path | None = None
    auth_audience: str = AUDIENCE


def test_from_settings_defaults_to_the_shipped_clients(tmp_path: Path) -> None:
    issuer = DevIssuer.from_settings(_FrontDoorLikeSettings(ISSUER, tmp_path / "k"))
    assert issuer.issuer == ISSUER
    assert issuer.clients.authenticate("relearn-dev", "dev-secret").client_id == "relearn-dev"
    issuer.publish()
    assert _published_verifier(issuer).verify(issuer.mint("relearn-dev", "user/*.*")).subject == "relearn-dev"


def test_a_filtered_v2_scope_is_granted_over_http_and_verifies(http: TestClient, issuer: DevIssuer) -> None:
    scope = "user/Observation.rs?category=vital-signs user/CarePlan.r"
    response = http.post(
        "/auth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=("relearn-dev", "dev-secret"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == scope
    principal = _published_verifier(issuer).verify(response.json()["access_token"])
    assert principal.access("Observation", "s").filters == ((("category", "vital-signs"),),)
    assert principal.allows("CarePlan", "r") and not principal.allows("CarePlan", "s")
