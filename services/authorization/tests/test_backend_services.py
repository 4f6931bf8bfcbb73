"""SMART Backend Services (client_credentials + private_key_jwt) on the real service and PostgreSQL, with
the negative cases conformance kits skip: replayed jti, exp too far out, wrong aud, ambiguous or unknown
kid, wrong algorithm; device clients, key rotation, revocation, introspection, jwks_uri caching."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from relearn.authorization.domain.directory import parse_clients
from relearn.authorization.service.jwks import max_age
from relearn.shared.auth import JwtVerifier, parse_jwks
from relearn.shared.service import transaction

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Running


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def refused(resp: httpx.Response, error: str = "invalid_client", status: int = 401) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"] == error, body
    assert resp.headers["cache-control"] == "no-store"
    return str(body["error_description"])


# --- discovery ------------------------------------------------------------------------------------------


def test_discovery_has_every_required_and_supported_recommended_field(service: Running) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        config = httpx.get(f"{service.url}{path}").json()
        assert config["issuer"] == "http://127.0.0.1:8080/auth"
        assert config["token_endpoint"] == "http://127.0.0.1:8080/auth/token"
        assert config["authorization_endpoint"].endswith("/auth/authorize")
        assert config["jwks_uri"].endswith("/auth/jwks.json")
        assert config["introspection_endpoint"].endswith("/auth/introspect")
        assert config["revocation_endpoint"].endswith("/auth/revoke")
        assert config["code_challenge_methods_supported"] == ["S256"]
        assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
        assert config["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        assert set(config["grant_types_supported"]) == {
            "authorization_code",
            "client_credentials",
            "refresh_token",
        }
        assert config["response_types_supported"] == ["code"]
        assert {"launch-ehr", "launch-standalone", "client-confidential-asymmetric", "permission-v2"} <= set(
            config["capabilities"]
        )
        assert {"system/*.rs", "launch/patient", "openid", "fhirUser"} <= set(config["scopes_supported"])


def test_tokens_verify_with_the_published_jwks_as_services_do(service: Running) -> None:
    resp = service.token("backend", service.keys.backend, "system/Observation.rs")
    assert resp.status_code == 200, resp.text
    jwks = httpx.get(f"{service.url}/auth/jwks.json").json()
    assert all(k["alg"] in ("ES384", "RS384") and "d" not in k for k in jwks["keys"])
    verifier = JwtVerifier(parse_jwks(jwks), issuer="http://127.0.0.1:8080/auth", audience="relearn")
    principal = verifier.verify(resp.json()["access_token"])
    assert principal.client_id == "backend"
    assert principal.raw_scope == "system/Observation.rs"
    assert service.settings.fhir_base_url in claims_of(resp.json()["access_token"])["aud"]


# --- the grant --------------------------------------------------------------------------------------------


def test_backend_services_token(service: Running) -> None:
    resp = service.token("backend", service.keys.backend, "system/Observation.rs system/Patient.read")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] <= 300
    assert "refresh_token" not in body
    # requested ∩ registered (system/*.rs): v1 stays v1
    assert body["scope"] == "system/Observation.rs system/Patient.read"
    claims = claims_of(body["access_token"])
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["sub"] == claims["client_id"] == "backend"
    assert "device" not in claims


def test_granted_scopes_are_the_request_within_the_registration(service: Running) -> None:
    body = service.token("backend", service.keys.backend, "system/Observation.cruds system/*.write").json()
    # Observation: rs (registered for every type) + c (registered for Observation); write -> only c
    assert body["scope"] == "system/Observation.rs system/Observation.c"
    none = service.token("backend", service.keys.backend, "user/Observation.read patient/*.rs")
    refused(none, "invalid_scope", 400)


def test_rsa_client_rs384(service: Running) -> None:
    resp = service.token("backend-rsa", service.keys.backend_rsa, "system/Patient.read")
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "system/Patient.read"


def test_a_replayed_jti_is_refused(service: Running) -> None:
    jti = uuid.uuid4().hex
    assert service.token("backend", service.keys.backend, "system/Patient.rs", jti=jti).status_code == 200
    again = service.token("backend", service.keys.backend, "system/Patient.rs", jti=jti)
    assert "replay" in refused(again)
    # the same assertion, byte for byte
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        **service.client_auth("backend", service.keys.backend),
    }
    assert service.post("/auth/token", form).status_code == 200
    refused(service.post("/auth/token", form))


def test_exp_more_than_five_minutes_out_is_refused(service: Running) -> None:
    assert "ahead" in refused(service.token("backend", service.keys.backend, "system/Patient.rs", exp_in=600))
    assert "expired" in refused(
        service.token("backend", service.keys.backend, "system/Patient.rs", exp_in=-60)
    )


def test_wrong_aud_is_refused(service: Running) -> None:
    for aud in (
        service.settings.fhir_base_url,
        "http://127.0.0.1:8080/auth",
        "https://elsewhere.example/token",
    ):
        assert "aud" in refused(service.token("backend", service.keys.backend, "system/Patient.rs", aud=aud))


def test_ambiguous_or_unknown_kid_is_refused(service: Running) -> None:
    assert "ambiguous" in refused(service.token("ambiguous", service.keys.ambiguous_a, "system/Patient.rs"))
    unknown = service.token("backend", service.keys.backend, "system/Patient.rs", kid="nobody-has-this")
    assert "no registered" in refused(unknown)
    # a key the client never registered, under the registered kid: the signature fails
    assert "signature" in refused(service.token("backend", service.keys.stranger, "system/Patient.rs"))
    # an EC key's kid used with RS384: no RSA key of that kid
    assert "no registered" in refused(
        service.token("backend", service.keys.backend_rsa, "system/Patient.rs", kid="backend-1")
    )


def test_wrong_algorithms_are_refused(service: Running) -> None:
    # ES256 (not advertised), HS256 with the public key as the secret (the classic confusion), none
    candidates: list[tuple[str, ECKey | OctKey]] = [
        ("ES256", ECKey.generate_key("P-256")),
        ("HS256", OctKey.import_key(json.dumps(service.public(service.keys.backend)))),
    ]
    for alg, key in candidates:
        now = int(time.time())
        claims = {
            "iss": "backend",
            "sub": "backend",
            "aud": service.token_url,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode({"alg": alg, "kid": "backend-1"}, claims, key, algorithms=[alg])
        form = {
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": token,
        }
        assert "algorithm" in refused(service.post("/auth/token", form))
    header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"backend-1"}').rstrip(b"=").decode()
    body = (
        base64.urlsafe_b64encode(json.dumps({"iss": "backend", "sub": "backend"}).encode())
        .rstrip(b"=")
        .decode()
    )
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": f"{header}.{body}.",
    }
    refused(service.post("/auth/token", form))


def test_iss_sub_mismatch_and_unknown_client_are_invalid_client(service: Running) -> None:
    refused(service.token("backend", service.keys.backend, "system/Patient.rs", iss="other"))
    refused(service.token("no-such-client", service.keys.backend, "system/Patient.rs"))
    bad_type = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        "client_assertion": service.assertion("backend", service.keys.backend),
    }
    refused(service.post("/auth/token", bad_type))
    refused(service.post("/auth/token", {"grant_type": "client_credentials", "scope": "system/Patient.rs"}))


def test_bad_requests_are_oauth_errors_not_500s(service: Running) -> None:
    refused(service.post("/auth/token", {"scope": "x"}), "invalid_request", 400)
    refused(service.post("/auth/token", {"grant_type": "password"}), "unsupported_grant_type", 400)
    resp = httpx.post(f"{service.url}/auth/token", json={"grant_type": "client_credentials"})
    refused(resp, "invalid_request", 400)
    resp = httpx.post(
        f"{service.url}/auth/token",
        content="grant_type=a&grant_type=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    refused(resp, "invalid_request", 400)
    garbage = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.rs",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": "not.a.jwt",
    }
    refused(service.post("/auth/token", garbage))


# --- devices ----------------------------------------------------------------------------------------------


def test_a_device_token_carries_its_bound_device(service: Running) -> None:
    body = service.token("hub", service.keys.hub_new, "system/Observation.write").json()
    assert claims_of(body["access_token"])["device"] == "hub-7"
    other = service.token("hub", service.keys.hub_new, "system/Observation.write", form={"device": "hub-9"})
    assert "not bound" in refused(other, "invalid_request", 400)
    several = service.token("hub-multi", service.keys.hub_old, "system/Observation.write")
    refused(several, "invalid_request", 400)
    chosen = service.token(
        "hub-multi", service.keys.hub_old, "system/Observation.write", form={"device": "hub-8-emg"}
    )
    assert claims_of(chosen.json()["access_token"])["device"] == "hub-8-emg"
    not_a_device = service.token(
        "backend", service.keys.backend, "system/Patient.rs", form={"device": "hub-7"}
    )
    refused(not_a_device, "invalid_request", 400)


def test_key_rotation_two_active_keys_both_work(service: Running) -> None:
    for key in (service.keys.hub_old, service.keys.hub_new):
        resp = service.token("hub", key, "system/Observation.write")
        assert resp.status_code == 200, resp.text


def test_a_revoked_device_gets_no_token_and_its_tokens_introspect_inactive(service: Running) -> None:
    issued = service.token("hub-revoked", service.keys.revoked_hub, "system/Observation.write")
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    rs = service.keys.resource_server

    def introspect() -> dict[str, Any]:
        resp = service.post(
            "/auth/introspect", {"token": token, **service.client_auth("resource-server", rs)}
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    before = introspect()
    assert before["active"] is True and before["device"] == "hub-9" and before["client_id"] == "hub-revoked"
    service.set_active("hub-revoked", False)
    try:
        assert introspect() == {"active": False}
        assert "revoked" in refused(
            service.token("hub-revoked", service.keys.revoked_hub, "system/Observation.write")
        )
    finally:
        service.set_active("hub-revoked", True)
    assert introspect()["active"] is True


# --- introspection and revocation ---------------------------------------------------------------------


def test_introspection_needs_an_authenticated_caller_and_sees_only_what_it_may(service: Running) -> None:
    token = service.token("backend", service.keys.backend, "system/Patient.rs").json()["access_token"]
    refused(service.post("/auth/introspect", {"token": token}))
    own = service.post(
        "/auth/introspect", {"token": token, **service.client_auth("backend", service.keys.backend)}
    )
    assert own.json()["active"] is True and own.json()["scope"] == "system/Patient.rs"
    foreign = service.post(
        "/auth/introspect", {"token": token, **service.client_auth("hub", service.keys.hub_new)}
    )
    assert foreign.json() == {"active": False}
    junk = service.post(
        "/auth/introspect",
        {"token": "junk", **service.client_auth("resource-server", service.keys.resource_server)},
    )
    assert junk.json() == {"active": False}


def test_revocation(service: Running) -> None:
    token = service.token("backend", service.keys.backend, "system/Patient.rs").json()["access_token"]
    resp = service.post(
        "/auth/revoke", {"token": token, **service.client_auth("backend", service.keys.backend)}
    )
    assert resp.status_code == 200
    seen = service.post(
        "/auth/introspect",
        {"token": token, **service.client_auth("resource-server", service.keys.resource_server)},
    )
    assert seen.json() == {"active": False}
    # an unknown token: 200 as well (RFC 7009 §2.2)
    again = service.post(
        "/auth/revoke", {"token": "whatever", **service.client_auth("backend", service.keys.backend)}
    )
    assert again.status_code == 200


# --- JWKS by URL ----------------------------------------------------------------------------------------


def test_jwks_uri_is_fetched_once_within_max_age_and_again_for_a_new_kid(service: Running) -> None:
    server = service.jwks_server
    first = service.token("by-url", service.keys.by_url, "system/Patient.read")
    assert first.status_code == 200, first.text
    fetched = server.fetches
    assert service.token("by-url", service.keys.by_url, "system/Patient.read").status_code == 200
    assert server.fetches == fetched  # Cache-Control: max-age=3600 honoured
    server.keys = [service.public(service.keys.by_url), service.public(service.keys.by_url_next)]
    rotated = service.token("by-url", service.keys.by_url_next, "system/Patient.read")
    assert rotated.status_code == 200, rotated.text  # a kid the cached set lacks: fetched again
    assert server.fetches == fetched + 1


# --- production mode --------------------------------------------------------------------------------------


def test_client_secrets_are_refused_in_production(production: Running) -> None:
    form = {"grant_type": "client_credentials", "scope": "system/Patient.rs"}
    basic = production.post("/auth/token", form, auth=("dev-secret", "s3cret-dev"))
    assert "private_key_jwt" in refused(basic)
    posted = production.post(
        "/auth/token", {**form, "client_id": "dev-secret", "client_secret": "s3cret-dev"}
    )
    refused(posted)
    config = httpx.get(f"{production.url}/.well-known/smart-configuration").json()
    assert "client_secret_basic" not in config["token_endpoint_auth_methods_supported"]
    # Backend Services work in production, over the http jwks_uri? No: https only there.
    assert "https" in refused(production.token("by-url", production.keys.by_url, "system/Patient.read"))
    assert production.token("backend", production.keys.backend, "system/Patient.rs").status_code == 200


def test_client_secrets_work_in_development(service: Running) -> None:
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Patient.read patient/*.read",
        "patient": "p1",
    }
    resp = service.post("/auth/token", form, auth=("dev-secret", "s3cret-dev"))
    assert resp.status_code == 200, resp.text
    assert claims_of(resp.json()["access_token"])["patient"] == "p1"
    refused(service.post("/auth/token", form, auth=("dev-secret", "wrong")))


def test_an_assertion_sent_to_two_replicas_at_once_is_accepted_once(service: Running, replica: str) -> None:
    """The replay store is the database's primary key: two replicas racing on one jti, one wins."""
    for _ in range(10):
        form = {
            "grant_type": "client_credentials",
            "scope": "system/Patient.rs",
            **service.client_auth("backend", service.keys.backend),
        }
        barrier = threading.Barrier(2)

        def send(base: str, form: dict[str, str] = form, barrier: threading.Barrier = barrier) -> int:
            barrier.wait()
            return httpx.post(f"{base}/auth/token", data=form, timeout=30).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(send, [service.url, replica]))
        assert statuses == [200, 401]


def test_a_client_left_out_of_the_directory_file_is_revoked(service: Running) -> None:
    assert service.token("backend-rsa", service.keys.backend_rsa, "system/Patient.read").status_code == 200
    document = json.loads(service.settings.clients_file.read_text()) if service.settings.clients_file else {}
    authz = service.app.state.authorization
    without = {"clients": [c for c in document["clients"] if c["client_id"] != "backend-rsa"]}
    try:
        with transaction(service.app.state.engine) as session:
            authz.load_clients(session, parse_clients(json.dumps(without), "test"))
        refused(service.token("backend-rsa", service.keys.backend_rsa, "system/Patient.read"))
    finally:
        with transaction(service.app.state.engine) as session:
            authz.load_clients(session, parse_clients(json.dumps(document), "test"))
    assert service.token("backend-rsa", service.keys.backend_rsa, "system/Patient.read").status_code == 200


def test_a_jwks_uri_answer_is_bounded_in_size(service: Running) -> None:
    keys = [{"kty": "EC", "kid": f"k{i}", "x": "A" * 64, "y": "B" * 64} for i in range(2000)]
    big = type(service.jwks_server)(keys=keys)  # another JwksServer: about 300 KB of keys
    big.start()
    document = json.loads(service.settings.clients_file.read_text()) if service.settings.clients_file else {}
    authz = service.app.state.authorization
    extra = {"client_id": "by-big-url", "jwks_uri": big.url, "scope": "system/*.read"}
    try:
        with transaction(service.app.state.engine) as session:
            authz.load_clients(
                session, parse_clients(json.dumps({"clients": [*document["clients"], extra]}), "t")
            )
        assert "larger than" in refused(
            service.token("by-big-url", service.keys.by_url, "system/Patient.read")
        )
    finally:
        big.stop()
        with transaction(service.app.state.engine) as session:
            authz.load_clients(session, parse_clients(json.dumps(document), "test"))


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 300), ("public, max-age=60", 60), ("max-age=999999", 86400), ("no-store", 0), ("no-cache", 0)],
)
def test_cache_control_of_a_jwks_uri(header: str | None, seconds: int) -> None:
    assert max_age(header, 300, 86400) == seconds
