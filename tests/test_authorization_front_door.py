"""The authorization service behind the front door, end to end on the running platform: discovery at the
FHIR base and the root, Backend Services tokens (a private key) and App Launch tokens (login page, PKCE)
used for FHIR reads through the one base URL, a device client's token, introspection, a replayed assertion."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from relearn.devtools.platform import DEV_APP_REDIRECT, DEV_HUB, DEVICE_CLIENT, Platform
from relearn.devtools.smart import ASSERTION_TYPE


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_discovery_through_the_front_door(running_platform: Platform) -> None:
    s = running_platform.settings
    for url in (
        f"{s.fhir_base_url}/.well-known/smart-configuration",
        f"http://{s.host}:{s.front_door_port}/.well-known/smart-configuration",
    ):
        resp = httpx.get(url)
        assert resp.status_code == 200, resp.text
        config = resp.json()
        assert config["issuer"] == s.issuer_url
        assert config["token_endpoint"] == s.token_url
        assert config["code_challenge_methods_supported"] == ["S256"]
    jwks = httpx.get(f"{s.issuer_url}/jwks.json").json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


def test_a_backend_services_token_reads_fhir_through_the_front_door(running_platform: Platform) -> None:
    backend = running_platform.backend()
    answer = backend.token_response("system/Observation.rs")
    assert answer["expires_in"] <= 300 and "refresh_token" not in answer
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    resp = httpx.get(
        f"{running_platform.settings.fhir_base_url}/Observation", params={"_count": "1"}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["resourceType"] == "Bundle"
    # the scope granted is what was asked: no write
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    write = httpx.post(f"{running_platform.settings.fhir_base_url}/Observation", json=obs, headers=headers)
    assert write.status_code == 403


def test_a_replayed_assertion_is_refused_through_the_front_door(running_platform: Platform) -> None:
    backend = running_platform.backend()
    form = {
        "grant_type": "client_credentials",
        "scope": "system/Observation.rs",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": backend.assertion(),
    }
    assert httpx.post(running_platform.settings.token_url, data=form).status_code == 200
    again = httpx.post(running_platform.settings.token_url, data=form)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert again.headers["cache-control"] == "no-store"


def test_the_clinic_hub_gets_a_device_token_with_its_key(running_platform: Platform) -> None:
    hub = running_platform.backend(DEVICE_CLIENT)
    token = hub.token("system/Observation.write")
    assert _claims(token)["device"] == DEV_HUB
    backend = running_platform.backend()
    form = {"token": token, "client_assertion_type": ASSERTION_TYPE, "client_assertion": backend.assertion()}
    seen = httpx.post(f"{running_platform.settings.issuer_url}/introspect", data=form).json()
    assert seen["active"] is True and seen["device"] == DEV_HUB and seen["client_id"] == DEVICE_CLIENT


def test_an_app_launch_token_reads_the_patients_record(running_platform: Platform) -> None:
    s = running_platform.settings
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": "relearn-dev-app",
        "redirect_uri": DEV_APP_REDIRECT,
        "scope": "launch/patient openid fhirUser patient/Observation.rs",
        "state": secrets.token_urlsafe(8),
        "aud": s.fhir_base_url,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page = httpx.get(f"{s.issuer_url}/authorize", params=params)
    assert page.status_code == 200 and "Sign in" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    hidden = dict(re.findall(r"<input type='hidden' name='([^']+)' value='([^']*)'>", page.text))
    login = {**hidden, "username": "patient", "password": "patient-dev", "decision": "allow"}
    back = httpx.post(f"{s.issuer_url}/authorize", data=login, cookies=page.cookies)
    assert back.status_code == 303, back.text
    query = parse_qs(urlsplit(back.headers["location"]).query)
    assert query["state"] == [params["state"]]
    exchange = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": DEV_APP_REDIRECT,
        "client_id": "relearn-dev-app",
        "code_verifier": verifier,
    }
    resp = httpx.post(s.token_url, data=exchange, headers={"Origin": "http://127.0.0.1:8000"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["access-control-allow-origin"]
    body = resp.json()
    assert body["patient"] == "dev-patient" and body["id_token"]
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    own = httpx.get(
        f"{s.fhir_base_url}/Observation", params={"subject": "Patient/dev-patient"}, headers=headers
    )
    assert own.status_code == 200, own.text
