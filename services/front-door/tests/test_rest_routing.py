"""REST routing rules of the front door, against two small stand-in upstream apps (not Relearn services).

The whole-platform behaviour (the real services, WebSockets) is in tests/test_front_door_rest.py; here
the rules that need upstreams shaped on purpose: a path two services claim, paths the front door keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from relearn.front_door.config import Settings
from relearn.front_door.main import create_app


def _upstream(name: str, *paths: str) -> FastAPI:
    app = FastAPI(title=f"{name} API")

    async def echo(request: Request) -> dict[str, object]:
        return {
            "service": name,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "authorization": request.headers.get("authorization"),
            "body": (await request.body()).decode(),
        }

    for path in paths:
        for method in ("GET", "POST"):
            app.add_api_route(path, echo, methods=[method])
    return app


@pytest.fixture
def door() -> Iterator[TestClient]:
    alpha = _upstream("alpha", "/things", "/things/{thing_id}", "/shared", "/apis/mine")
    beta = _upstream("beta", "/others/{other_id}/close", "/shared", "/{anything}/x")
    upstreams = httpx.AsyncClient(
        mounts={
            "http://alpha": httpx.ASGITransport(app=alpha),
            "http://beta": httpx.ASGITransport(app=beta),
        }
    )
    settings = Settings(upstreams={"alpha": "http://alpha", "beta": "http://beta"}, dev_issuer_enabled=False)
    with TestClient(create_app(settings, http=upstreams)) as client:
        yield client


def test_paths_go_to_the_service_whose_openapi_lists_them(door: TestClient) -> None:
    resp = door.post(
        "/things/7?b=2&a=1&a=3",
        content=b'{"x": 1}',
        headers={"Authorization": "Bearer t", "X-Other": "no", "Content-Type": "application/json"},
    )
    assert resp.status_code == 200
    assert resp.json() == {
        "service": "alpha",
        "method": "POST",
        "path": "/things/7",
        "query": "b=2&a=1&a=3",
        "authorization": "Bearer t",
        "body": '{"x": 1}',
    }
    assert door.post("/others/1/close").json()["service"] == "beta"
    apis = {a["service"]: a for a in door.get("/apis").json()["apis"]}
    assert apis["alpha"]["paths"] == ["/things"] and apis["beta"]["paths"] == ["/others"]


def test_header_and_url_errors_are_4xx_before_forwarding(door: TestClient) -> None:
    """Bytes or paths the proxy cannot forward, or limits exceeded, never reach a service nor become 5xx."""
    for header in (b"Bearer \xe9", b"Bearer  ", b"Bearer"):
        resp = door.get("/things/1", headers={"Authorization": header})  # type: ignore[dict-item]
        assert resp.status_code == 401, header
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.json()["resourceType"] == "OperationOutcome"
    for path in (
        "/fhir/Observation/a%00b",
        "/things/%00",
        "/things/..%2F..%2Freadyz",
        "/things/%2e%2e/readyz",
    ):
        resp = door.get(path)
        assert resp.status_code == 400, path
        assert resp.json()["issue"][0]["expression"] == ["path"]
    resp = door.get("/things/1", params={"q": "x" * 40_000})
    assert resp.status_code == 414 and resp.json()["resourceType"] == "OperationOutcome"
    resp = door.post("/things/1", content=b'{"x": 1}', headers={"Authorization": "Bearer t"})
    assert resp.status_code == 415
    resp = door.post(
        "/things/1", content=b"[" * 100 + b"]" * 100, headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 400 and "max_json_depth" in resp.json()["issue"][0]["diagnostics"]
    entry = {"request": {"method": "GET", "url": "Observation/1"}}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [entry] * 1001}
    resp = door.post("/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert resp.status_code == 413 and "max_bundle_entries" in resp.json()["issue"][0]["diagnostics"]
    big = b'{"x": "' + b"y" * (8 * 1024 * 1024) + b'"}'
    resp = door.post("/things/1", content=big, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413
    # A non-ASCII value of another forwarded header reaches the service as sent, not a 500.
    resp = door.get("/things/1", headers={"Authorization": "Bearer t", "Prefer": b"x=\xe9"})  # type: ignore[dict-item]
    assert resp.status_code == 200


def test_a_path_two_services_claim_is_logged_and_not_routed(
    door: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="relearn.front_door.rest"):
        resp = door.get("/shared")
    assert resp.status_code == 404
    assert "claimed by both alpha and beta" in resp.json()["issue"][0]["diagnostics"]
    assert any("several services" in r.getMessage() for r in caplog.records)


def test_the_front_doors_own_paths_and_templated_segments_are_not_routed(door: TestClient) -> None:
    assert door.get("/apis/mine").status_code == 404  # /apis is the front door's
    assert door.get("/whatever/x").status_code == 404  # beta's /{anything} cannot claim the host
    unknown = door.get("/nothing-here")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    assert "/nothing-here" in unknown.json()["issue"][0]["diagnostics"]


def test_the_development_issuer_refuses_to_start_in_production(tmp_path: Path) -> None:
    settings = Settings(upstreams={}, environment="production", dev_issuer_enabled=True)
    with pytest.raises(ValueError, match="FRONT_DOOR_INSECURE_DEV_ISSUER_IN_PRODUCTION"):
        create_app(settings)
    # Without the issuer, production starts; with the loud flag, so does the issuer (and it says so).
    create_app(Settings(upstreams={}, environment="production", dev_issuer_enabled=False))
    loud = Settings(
        upstreams={},
        environment="production",
        dev_issuer_enabled=True,
        insecure_dev_issuer_in_production=True,
        dev_key_dir=tmp_path,
    )
    assert "/auth/token" in create_app(loud).openapi()["paths"]


def test_the_front_doors_openapi_lists_the_paths_it_routes_with_their_documentation(door: TestClient) -> None:
    spec = door.get("/openapi.json").json()
    paths = spec["paths"]
    # Its own, and each service's paths it routes to that service (with the service's documentation).
    assert "/fhir/metadata" in paths and "/apis" in paths
    assert "/things/{thing_id}" in paths and "/others/{other_id}/close" in paths
    assert paths["/things/{thing_id}"]["get"]["responses"]
    # Not the paths it does not route: one two services claim, one under a templated first segment.
    assert "/shared" not in paths and "/{anything}/x" not in paths
    # Every error answer it documents is an OperationOutcome.
    assert "OperationOutcome" in spec["components"]["schemas"]
    # /docs shows the same document.
    assert "/openapi.json" in door.get("/docs").text


def test_encoded_control_characters_in_a_path_pass_on_encoded_not_a_server_error(door: TestClient) -> None:
    """Found by make fuzz: a decoded control character made an invalid URL to the service (500)."""
    resp = door.get("/things/%1F%C3%A9%20x", headers={"Authorization": "Bearer t"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["path"] == "/things/\x1fé x"
