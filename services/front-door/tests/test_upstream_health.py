"""A starting or briefly failing service behind the front door: 503 + Retry-After, never "not supported".

Two stand-in FHIR upstreams (not Relearn services): ``alpha`` serves Patient and is up from the start;
``beta`` serves Device and is down until the test brings it up (a connection refused, as while it
starts). The front door must not answer 404 for beta's types meanwhile, must say in ``/metadata`` that
beta is missing, and must not be ready. A stale keep-alive connection (the service closed it) costs a
read nothing: it is sent again once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from relearn.front_door.config import Settings
from relearn.front_door.main import create_app


def _fhir_upstream(rtype: str) -> FastAPI:
    app = FastAPI()

    @app.get("/fhir/metadata")
    def metadata() -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "rest": [{"mode": "server", "resource": [{"type": rtype}], "interaction": [{"code": "batch"}]}],
        }

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.api_route(f"/fhir/{rtype}", methods=["GET", "POST"])
    async def echo(request: Request) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": "searchset", "method": request.method}

    return app


class Switchable(httpx.AsyncBaseTransport):
    """An upstream that refuses connections while down, and can fail the next requests as a closed socket."""

    def __init__(self, app: FastAPI, *, up: bool) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.up = up
        self.disconnects = 0  # the next N requests fail as "server disconnected"
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        self.seen.append(f"{request.method} {request.url.path}")
        if self.disconnects and request.url.path != "/fhir/metadata":
            self.disconnects -= 1
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        return await self.inner.handle_async_request(request)


@pytest.fixture
def upstreams() -> dict[str, Switchable]:
    return {
        "alpha": Switchable(_fhir_upstream("Patient"), up=True),
        "beta": Switchable(_fhir_upstream("Device"), up=False),
    }


@pytest.fixture
def door(upstreams: dict[str, Switchable]) -> Iterator[TestClient]:
    client = httpx.AsyncClient(mounts={f"http://{name}": t for name, t in upstreams.items()})
    settings = Settings(
        upstreams={"alpha": "http://alpha", "beta": "http://beta"},
        dev_issuer_enabled=False,
        capability_retry_s=0,  # ask a missing service on every call (the default waits 0.5 s between)
    )
    with TestClient(create_app(settings, http=client)) as test_client:
        yield test_client


def test_a_starting_service_makes_its_types_503_with_retry_after_not_404(
    door: TestClient, upstreams: dict[str, Switchable]
) -> None:
    assert door.get("/fhir/Patient").status_code == 200  # alpha's types work meanwhile

    starting = door.get("/fhir/Device")
    assert starting.status_code == 503
    assert starting.headers["Retry-After"] == "5"
    assert starting.json()["issue"][0]["code"] == "transient"
    assert "beta" in starting.json()["issue"][0]["diagnostics"]

    metadata = door.get("/fhir/metadata").json()
    assert [r["type"] for r in metadata["rest"][0]["resource"]] == ["Patient"]
    assert "Incomplete: beta" in metadata["rest"][0]["documentation"]

    ready = door.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["capabilities"] == "missing: beta"

    upstreams["beta"].up = True
    assert door.get("/fhir/Device").status_code == 200  # learned on the next call, not 5 s later
    metadata = door.get("/fhir/metadata").json()
    assert [r["type"] for r in metadata["rest"][0]["resource"]] == ["Device", "Patient"]
    assert "documentation" not in metadata["rest"][0]
    assert door.get("/readyz").status_code == 200
    # Once every service has said what it serves, an unknown type is what it is: not supported.
    unknown = door.get("/fhir/Spaceship")
    assert unknown.status_code == 404
    assert unknown.json()["issue"][0]["code"] == "not-supported"


def test_a_known_service_that_goes_down_answers_503_with_retry_after(
    door: TestClient, upstreams: dict[str, Switchable]
) -> None:
    upstreams["beta"].up = True
    assert door.get("/fhir/Device").status_code == 200
    upstreams["beta"].up = False
    down = door.get("/fhir/Device")
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "5"


def test_a_read_on_a_connection_the_service_closed_is_sent_again(
    door: TestClient, upstreams: dict[str, Switchable]
) -> None:
    """One failure of the service's connection (it answered a 500 and closed it) is not "service down"."""
    alpha = upstreams["alpha"]
    assert door.get("/fhir/Patient").status_code == 200
    alpha.disconnects = 1
    assert door.get("/fhir/Patient").status_code == 200
    assert alpha.seen[-2:] == ["GET /fhir/Patient", "GET /fhir/Patient"]


def test_a_write_is_sent_again_only_with_an_idempotency_key(
    door: TestClient, upstreams: dict[str, Switchable]
) -> None:
    alpha = upstreams["alpha"]
    assert door.get("/fhir/Patient").status_code == 200
    alpha.disconnects = 1
    unsure = door.post("/fhir/Patient", json={"resourceType": "Patient"})
    assert unsure.status_code == 503  # it may have been stored: the client decides, told when to retry
    assert unsure.headers["Retry-After"] == "5"
    alpha.disconnects = 1
    keyed = door.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={"Idempotency-Key": "k-1"})
    assert keyed.status_code == 200
