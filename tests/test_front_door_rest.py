"""One host for everything: the services' REST APIs and live WebSockets through the front door.

Under docker-compose the front door is the only published port, so a third-party app or a clinic's
device hub reaches ``/streams``, ``/ingest/ws``, ``/sessions`` ... only through it. The whole
platform runs as ``make run`` starts it (``running_platform``: separate processes, PostgreSQL), and
every call here goes to the front door's address only; the routes come from the services' OpenAPI.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from relearn.devtools.platform import Platform

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
EMG_CHANNEL = [{"name": "vastus-lateralis-right", "unit": "mV"}]


def _token(p: Platform, auth: tuple[str, str], scope: str, **extra: str) -> str:
    data = {"grant_type": "client_credentials", "scope": scope, **extra}
    resp = httpx.post(f"{p.settings.issuer_url}/token", data=data, auth=auth)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class FrontDoor:
    """The front door's one address, with the tokens an app, a patient and a device hub would hold."""

    def __init__(self, p: Platform) -> None:
        self.platform = p
        self.url = p.urls()["front-door"]
        self.ws_url = self.url.replace("http://", "ws://", 1)
        self.http = httpx.Client(base_url=self.url, timeout=30.0)
        self.clinician = _bearer(_token(p, ("relearn-dev", "dev-secret"), "system/*.read system/*.write"))

    def patient_token(self, patient: str) -> str:
        return _token(self.platform, ("relearn-dev", "dev-secret"), "patient/*.read", patient=patient)

    def device_token(self, device: str) -> str:
        auth = ("device-gateway-dev", "device-gateway-secret")
        return _token(self.platform, auth, "system/Observation.write", device=device)

    def device(self, name: str, parent: str | None = None, id: str | None = None) -> str:
        body: dict[str, Any] = {
            "resourceType": "Device",
            "status": "active",
            "deviceName": [{"name": name, "type": "user-friendly-name"}],
        }
        if parent:
            body["parent"] = {"reference": f"Device/{parent}"}
        headers = {**self.clinician, "Content-Type": "application/fhir+json"}
        if id is not None:
            resp = self.http.put(f"/fhir/Device/{id}", json={**body, "id": id}, headers=headers)
        else:
            resp = self.http.post("/fhir/Device", json=body, headers=headers)
        assert resp.status_code in (200, 201), resp.text
        return str(resp.json()["id"])

    def websocket(self, path: str, headers: dict[str, str] | None = None) -> ClientConnection:
        return connect(f"{self.ws_url}{path}", additional_headers=headers, open_timeout=30)


@pytest.fixture(scope="module")
def door(running_platform: Platform) -> FrontDoor:
    return FrontDoor(running_platform)


@pytest.fixture(scope="module")
def devices(door: FrontDoor) -> tuple[str, str]:
    """A clinic hub carrying an EMG sensor (FHIR Devices, created through the front door)."""
    # The hub the development device client is registered with (dev-clients.json): the only one it may claim.
    hub = door.device("Clinic hub", id="relearn-dev-hub")
    return hub, door.device("EMG sensor", parent=hub)


@pytest.fixture
def kit(door: FrontDoor, devices: tuple[str, str]) -> dict[str, str]:
    """An open stream binding of the sensor for a new patient, opened through the front door."""
    hub, sensor = devices
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    resp = door.http.post(
        "/streams",
        json={"device": sensor, "streamType": "emg", "patient": patient, "session": None, "protocol": {}},
        headers=door.clinician,
    )
    assert resp.status_code == 201, resp.text
    binding = resp.json()
    assert binding["status"] == "open" and binding["patient"] == patient
    return {"hub": hub, "sensor": sensor, "patient": patient, "stream": binding["id"]}


def _frame(kit: dict[str, str], sequence: int, n: int = 100) -> dict[str, Any]:
    return {
        "deviceId": kit["sensor"],
        "streamType": "emg",
        "streamId": kit["stream"],
        "sequence": sequence,
        "startTime": (T0 + timedelta(seconds=sequence * n / 1000)).isoformat(),
        "samplingRateHz": 1000.0,
        "channels": EMG_CHANNEL,
        "samples": [[0.05 * (1 if i % 2 else -1)] for i in range(n)],
    }


def _close_code(ws: ClientConnection) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None, "the connection ended without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_the_front_door_lists_the_rest_apis_it_routes(door: FrontDoor) -> None:
    resp = door.http.get("/apis")
    assert resp.status_code == 200
    apis = {api["service"]: api for api in resp.json()["apis"]}
    assert {"/streams", "/ingest"} <= set(apis["device-gateway"]["paths"])
    assert {"/ingest/ws", "/biofeedback/ws"} == set(apis["device-gateway"]["websockets"])
    assert {"/sessions", "/patients"} <= set(apis["sessions"]["paths"])
    assert {"/plans", "/catalogue"} <= set(apis["plan"]["paths"])
    assert "/evaluations" in apis["evaluation"]["paths"]
    assert all("/fhir" not in api["paths"] and "/healthz" not in api["paths"] for api in apis.values())
    # Each service's OpenAPI document is readable here (its paths work against this host).
    spec = door.http.get(apis["device-gateway"]["openapi"])
    assert spec.status_code == 200 and "/streams" in spec.json()["paths"]
    assert door.http.get(apis["sessions"]["docs"]).status_code == 200


def test_a_stream_binding_is_created_and_read_through_the_front_door(
    door: FrontDoor, kit: dict[str, str]
) -> None:
    resp = door.http.get(f"/streams/{kit['stream']}", headers=door.clinician)
    assert resp.status_code == 200
    assert resp.json()["device"] == kit["sensor"]
    listed = door.http.get("/streams", params={"patient": kit["patient"]}, headers=door.clinician)
    assert [s["id"] for s in listed.json()] == [kit["stream"]]
    # The service checks the token: none -> its 401 OperationOutcome, passed through unchanged.
    anonymous = door.http.get(f"/streams/{kit['stream']}")
    assert anonymous.status_code == 401
    assert anonymous.json()["resourceType"] == "OperationOutcome"
    assert "www-authenticate" in anonymous.headers


def test_frames_post_through_the_front_door(door: FrontDoor, kit: dict[str, str]) -> None:
    headers = _bearer(door.device_token(kit["hub"]))
    resp = door.http.post("/ingest/frames", json={"frames": [_frame(kit, 0)]}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == [{"streamId": kit["stream"], "sequence": 0, "status": "accepted"}]


def test_sessions_rest_api_answers_through_the_front_door(door: FrontDoor) -> None:
    resp = door.http.get(
        "/patients/pat-nobody/adherence",
        params={"from": "2025-03-03", "to": "2025-03-16"},
        headers=door.clinician,
    )
    assert resp.status_code == 200, resp.text
    adherence = resp.json()
    assert adherence["patient"] == "pat-nobody" and adherence["from"] == "2025-03-03"
    systems = door.http.get("/sessions/code-systems", headers=door.clinician)
    assert systems.status_code == 200 and systems.json()["resourceType"] == "Bundle"
    # A service's validation error comes back as the service answered it (its status, its fields).
    bad = door.http.post("/sessions", json={"patient": "x"}, headers=door.clinician)
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert any("carePlan" in str(issue.get("expression")) for issue in bad.json()["issue"])


def test_an_unknown_path_is_a_404_operation_outcome(door: FrontDoor) -> None:
    resp = door.http.get("/no-such-api/1", headers=door.clinician)
    assert resp.status_code == 404
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "/no-such-api/1" in body["issue"][0]["diagnostics"]
    # The services' own plumbing is not reachable through the front door's catch-all.
    assert door.http.get("/redoc/x").status_code == 404


def test_an_unknown_websocket_path_is_refused_with_4404(door: FrontDoor) -> None:
    with door.websocket("/no-such/ws") as ws:
        code, _ = _close_code(ws)
    assert code == 4404


def test_biofeedback_and_ingest_websockets_through_the_front_door(
    door: FrontDoor, kit: dict[str, str]
) -> None:
    patient_token = door.patient_token(kit["patient"])
    # The patient watches their own stream (token as a query parameter, as a browser sends it).
    with door.websocket(f"/biofeedback/ws?stream={kit['stream']}&access_token={patient_token}") as watch:
        hello = json.loads(watch.recv(timeout=30))
        assert hello["type"] == "subscribed"
        assert hello["stream"] == kit["stream"] and hello["patient"] == kit["patient"]

        # The hub streams a frame over the ingest socket (token in the Authorization header).
        with door.websocket("/ingest/ws", headers=_bearer(door.device_token(kit["hub"]))) as ingest:
            ingest.send(json.dumps(_frame(kit, 0)))
            ack = json.loads(ingest.recv(timeout=30))
            assert ack == {"streamId": kit["stream"], "sequence": 0, "status": "accepted"}
            ingest.send(json.dumps(_frame(kit, 0)))
            assert json.loads(ingest.recv(timeout=30))["status"] == "duplicate"

        # ... and the patient's screen gets the live envelope of that frame, relayed by the front door.
        live = json.loads(watch.recv(timeout=30))
        while live["type"] == "lagging":
            live = json.loads(watch.recv(timeout=30))
        assert live["type"] == "emg" and live["stream"] == kit["stream"]


def test_websocket_refusals_keep_the_gateways_close_codes(door: FrontDoor, kit: dict[str, str]) -> None:
    other = door.patient_token("pat-someone-else")
    with door.websocket(f"/biofeedback/ws?stream={kit['stream']}", headers=_bearer(other)) as ws:
        code, reason = _close_code(ws)
    assert code == 4403 and "pat-someone-else" in reason

    with door.websocket(f"/biofeedback/ws?stream={kit['stream']}") as ws:  # no token
        code, _ = _close_code(ws)
    assert code == 4401

    # A token without a device claim may not ingest.
    with door.websocket("/ingest/ws", headers=door.clinician) as ws:
        code, _ = _close_code(ws)
    assert code == 4403
