"""SMART App Launch on the real service: standalone and EHR launch through the login and consent page,
authorization code + PKCE S256 (plain refused, the verifier checked), aud, state, launch context, id tokens,
rotating refresh tokens, CORS."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx

from relearn.shared.auth import JwtVerifier, parse_jwks

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Running

REDIRECT = "https://app.example/callback"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(service: Running, scope: str, challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(12),
        "aud": service.settings.fhir_base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **extra,
    }


def login(
    service: Running,
    params: dict[str, str],
    user: str,
    password: str,
    *,
    decision: str = "allow",
    **more: str,
) -> httpx.Response:
    page = httpx.get(f"{service.url}/auth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert page.headers["x-frame-options"] == "DENY"
    hidden = dict(re.findall(r"<input type='hidden' name='([^']+)' value='([^']*)'>", page.text))
    form = {**hidden, "username": user, "password": password, "decision": decision, **more}
    return httpx.post(f"{service.url}/auth/authorize", data=form, cookies=page.cookies)


def code_from(resp: httpx.Response, state: str) -> str:
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0]


def error_from(resp: httpx.Response, state: str) -> str:
    assert resp.status_code == 303, resp.text
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == [state]
    return query["error"][0]


def exchange(service: Running, code: str, verifier: str, **headers: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "app",
        "code_verifier": verifier,
    }
    return httpx.post(f"{service.url}/auth/token", data=form, headers=headers)


def test_standalone_patient_launch_end_to_end(service: Running) -> None:
    verifier, challenge = pkce()
    scope = "launch/patient openid fhirUser offline_access patient/Observation.rs patient/*.write"
    params = authorize_params(service, scope, challenge, nonce="n-1")
    code = code_from(login(service, params, "pat", "pat-pw"), params["state"])
    resp = exchange(service, code, verifier, Origin="https://app.example")
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    assert resp.headers["access-control-allow-origin"] == "*"
    body = resp.json()
    assert body["patient"] == "p1"
    # patient/*.write is not registered: left out; v1 stays v1 where asked in v1
    assert body["scope"] == "launch/patient openid fhirUser offline_access patient/Observation.rs"
    assert body["expires_in"] <= 300 and body["refresh_token"]
    jwks = httpx.get(f"{service.url}/auth/jwks.json").json()
    principal = JwtVerifier(parse_jwks(jwks), issuer=service.settings.issuer, audience="relearn").verify(
        body["access_token"]
    )
    assert principal.patient == "p1"
    claims = claims_of(body["access_token"])
    assert claims["fhirUser"] == f"{service.settings.fhir_base_url}/Patient/p1"
    id_token = JwtVerifier(parse_jwks(jwks), issuer=service.settings.issuer, audience="app").verified_claims(
        body["id_token"]
    )
    assert id_token["fhirUser"].endswith("/Patient/p1") and id_token["nonce"] == "n-1"
    # the code is single use
    assert exchange(service, code, verifier).json()["error"] == "invalid_grant"


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(service: Running) -> None:
    verifier, challenge = pkce()
    params = authorize_params(service, "launch/patient offline_access patient/*.rs", challenge)
    first = exchange(
        service, code_from(login(service, params, "pat", "pat-pw"), params["state"]), verifier
    ).json()

    def refresh(token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "app"}
        return httpx.post(f"{service.url}/auth/token", data=form)

    second = refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert second.json()["patient"] == "p1"
    assert refresh(first["refresh_token"]).json()["error"] == "invalid_grant"  # reused
    assert refresh(second.json()["refresh_token"]).json()["error"] == "invalid_grant"  # family revoked


def test_plain_pkce_is_refused(service: Running) -> None:
    verifier, _ = pkce()
    params = authorize_params(service, "launch/patient patient/*.rs", verifier, code_challenge_method="plain")
    resp = httpx.get(f"{service.url}/auth/authorize", params=params)
    assert error_from(resp, params["state"]) == "invalid_request"
    assert "plain" in parse_qs(urlsplit(resp.headers["location"]).query)["error_description"][0]
    no_pkce = {
        k: v for k, v in authorize_params(service, "patient/*.rs", "x").items() if not k.startswith("code_")
    }
    assert (
        error_from(httpx.get(f"{service.url}/auth/authorize", params=no_pkce), no_pkce["state"])
        == "invalid_request"
    )


def test_a_wrong_code_verifier_is_refused(service: Running) -> None:
    _verifier, challenge = pkce()
    params = authorize_params(service, "launch/patient patient/*.rs", challenge)
    code = code_from(login(service, params, "pat", "pat-pw"), params["state"])
    other, _ = pkce()
    resp = exchange(service, code, other)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    assert "code_verifier" in resp.json()["error_description"]


def test_a_wrong_aud_on_authorize_is_refused(service: Running) -> None:
    _, challenge = pkce()
    for aud in ("https://other.example/fhir", "http://127.0.0.1:8080/auth", ""):
        params = authorize_params(service, "launch/patient patient/*.rs", challenge, aud=aud)
        assert error_from(httpx.get(f"{service.url}/auth/authorize", params=params), params["state"]) == (
            "invalid_request"
        )


def test_an_unregistered_redirect_uri_is_never_redirected_to(service: Running) -> None:
    _, challenge = pkce()
    params = authorize_params(service, "patient/*.rs", challenge, redirect_uri="https://evil.example/cb")
    resp = httpx.get(f"{service.url}/auth/authorize", params=params)
    assert resp.status_code == 400 and "location" not in resp.headers
    params = authorize_params(service, "patient/*.rs", challenge, client_id="nobody")
    assert httpx.get(f"{service.url}/auth/authorize", params=params).status_code == 400


def test_wrong_password_and_denial(service: Running) -> None:
    _, challenge = pkce()
    params = authorize_params(service, "launch/patient patient/*.rs", challenge)
    assert login(service, params, "pat", "wrong").status_code == 401
    assert (
        error_from(login(service, params, "pat", "pat-pw", decision="deny"), params["state"])
        == "access_denied"
    )


def test_a_sign_in_posted_without_the_pages_cookie_is_refused(service: Running) -> None:
    """Login CSRF: a form another site makes the browser post lacks the SameSite cookie's token."""
    _, challenge = pkce()
    params = authorize_params(service, "launch/patient patient/*.rs", challenge)
    page = httpx.get(f"{service.url}/auth/authorize", params=params)
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/auth" in cookie
    hidden = dict(re.findall(r"<input type='hidden' name='([^']+)' value='([^']*)'>", page.text))
    form = {**hidden, "username": "pat", "password": "pat-pw", "decision": "allow"}
    forged = httpx.post(f"{service.url}/auth/authorize", data=form)  # no cookie
    assert forged.status_code == 403 and "location" not in forged.headers
    other = httpx.post(f"{service.url}/auth/authorize", data=form, cookies={"relearn_signin": "x" * 43})
    assert other.status_code == 403
    assert code_from(login(service, params, "pat", "pat-pw"), params["state"])


def test_repeated_wrong_passwords_are_throttled(service: Running) -> None:
    """Five wrong passwords for one user name: the sixth try is 429 with Retry-After, even the right one."""
    _, challenge = pkce()
    params = authorize_params(service, "launch/patient patient/*.rs", challenge)
    user = f"guess-{secrets.token_hex(4)}"
    for _ in range(5):
        assert login(service, params, user, "wrong").status_code == 401
    refused = login(service, params, user, "still wrong")
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60


def test_ehr_launch_carries_the_ehr_context(service: Running) -> None:
    created = service.post(
        "/auth/launch", {"patient": "p2", "encounter": "e9", **service.client_auth("ehr", service.keys.ehr)}
    )
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]
    refused = service.post(
        "/auth/launch", {"patient": "p2", **service.client_auth("backend", service.keys.backend)}
    )
    assert refused.status_code == 403
    verifier, challenge = pkce()
    params = authorize_params(
        service, "launch openid fhirUser patient/*.rs user/*.rs", challenge, launch=launch
    )
    code = code_from(login(service, params, "doc", "doc-pw"), params["state"])
    body = exchange(service, code, verifier).json()
    assert body["patient"] == "p2" and body["encounter"] == "e9"
    assert claims_of(body["access_token"])["patient"] == "p2"
    assert claims_of(body["id_token"])["fhirUser"].endswith("/Practitioner/d1")
    assert "refresh_token" not in body  # neither offline_access nor online_access asked for
    bogus = authorize_params(service, "launch patient/*.rs", challenge, launch="not-a-launch")
    assert (
        error_from(httpx.get(f"{service.url}/auth/authorize", params=bogus), bogus["state"])
        == "invalid_request"
    )


def test_standalone_clinician_picks_the_patient(service: Running) -> None:
    verifier, challenge = pkce()
    params = authorize_params(service, "launch/patient online_access patient/*.rs", challenge)
    code = code_from(login(service, params, "doc", "doc-pw", patient="p7"), params["state"])
    body = exchange(service, code, verifier).json()
    assert body["patient"] == "p7" and body["refresh_token"]


def test_cors_preflight_on_the_token_endpoint(service: Running) -> None:
    resp = httpx.options(
        f"{service.url}/auth/token",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "POST" in resp.headers["access-control-allow-methods"]
