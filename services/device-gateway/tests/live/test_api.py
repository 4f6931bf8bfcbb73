"""The biofeedback WebSocket on a FastAPI app with real development tokens.

Frames are published the way the ingest path does (``hub.publish`` from another thread, here the test's);
the app runs on the TestClient's own event loop thread.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from relearn.dev_issuer import DevIssuer
from relearn.device_gateway.live.api import biofeedback_router
from relearn.device_gateway.live.service import LiveHub, StreamInfo, Targets
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.devtools.apps import AUDIENCE, ISSUER, make_issuer, wait_for
from relearn.shared.auth import JwtVerifier

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Kit

Split = Callable[..., list[SensorFrame]]
CHANNELS = [{"name": f"ch{i}", "unit": "uV"} for i in range(8)]
FS = 2148.0

P1_STREAM = StreamInfo(
    "emg-p1", "armband-1", "p1", "enc-1", StreamType.EMG, mvc={"ch0": 80.0}, targets=Targets(20.0)
)
P2_STREAM = StreamInfo("emg-p2", "armband-2", "p2", "enc-2", StreamType.EMG)
OWNERS = {"emg-p1": "p1", "emg-p2": "p2"}
SESSIONS = {"enc-1": "p1", "enc-2": "p2"}


def resolve(stream: str | None, session: str | None, /) -> str | None:
    if stream == "boom":
        raise RuntimeError("the binding store is down")
    return OWNERS.get(stream or "") if stream is not None else SESSIONS.get(session or "")


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return make_issuer(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def hub() -> LiveHub:
    return LiveHub()


@pytest.fixture
def client(hub: LiveHub, issuer: DevIssuer) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.token_verifier = JwtVerifier(issuer.public_key_set(), issuer=ISSUER, audience=AUDIENCE)
    app.include_router(biofeedback_router(hub, resolve))
    with TestClient(app) as c:
        yield c


def token(issuer: DevIssuer, scope: str, patient: str | None = None) -> str:
    return issuer.mint("relearn-dev", scope, patient=patient)


def emg_frames(split: Split, stream: str, seconds: float = 2.0) -> list[SensorFrame]:
    rng = np.random.default_rng(5)
    signal = rng.normal(0, 10.0, size=(round(seconds * FS), 8))
    signal[round(FS) :] *= 20  # a contraction after the first second
    return split(signal, [round(0.2 * FS)], fs=FS, channels=CHANNELS, stream_id=stream, device_id="armband")


def receive(ws: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ws.receive_text())
    return result


def test_a_patient_watches_its_own_stream_at_display_rate(
    client: TestClient, hub: LiveHub, issuer: DevIssuer, split: Split
) -> None:
    mine, theirs = emg_frames(split, "emg-p1"), emg_frames(split, "emg-p2")
    url = f"/biofeedback/ws?stream=emg-p1&access_token={token(issuer, 'patient/Observation.read', 'p1')}"
    with client.websocket_connect(url) as ws:
        hello = receive(ws)
        assert hello == {"type": "subscribed", "stream": "emg-p1", "patient": "p1", "displayRateHz": 25.0}
        for a, b in zip(mine, theirs, strict=True):
            hub.publish(P2_STREAM, b)  # another patient's frames: never on this socket
            hub.publish(P1_STREAM, a)
        messages = [receive(ws) for _ in mine]
    assert {m["stream"] for m in messages} == {"emg-p1"}
    assert [m["sequence"] for m in messages] == list(range(len(mine)))
    updates = [u for m in messages for u in m["updates"]]
    data_seconds = sum(f.n_samples for f in mine) / FS
    assert len(updates) / data_seconds >= 20
    first, last = updates[0]["values"]["ch0"], updates[-1]["values"]["ch0"]
    assert first["unit"] == "uV" and first["aboveThreshold"] is False
    assert last["percentMvc"] > 20 and last["aboveThreshold"] is True
    assert messages[0]["targets"] == {"emgPercentMvcMin": 20.0}
    assert all(isinstance(m["sentAt"], int) for m in messages)


def test_a_clinician_watches_a_session_with_the_header_token(
    client: TestClient, hub: LiveHub, issuer: DevIssuer, split: Split
) -> None:
    headers = {"Authorization": f"Bearer {token(issuer, 'user/Observation.read')}"}
    with client.websocket_connect("/biofeedback/ws?session=enc-1", headers=headers) as ws:
        assert receive(ws)["session"] == "enc-1"
        frames = emg_frames(split, "emg-p1", seconds=0.4)
        for frame in frames:
            hub.publish(P2_STREAM, frame)
            hub.publish(P1_STREAM, frame)
        hub.close_stream("emg-p1")
        got = [receive(ws) for _ in range(3)]
    assert [(m["type"], m["stream"]) for m in got] == [
        ("emg", "emg-p1"),
        ("emg", "emg-p1"),
        ("closed", "emg-p1"),
    ]


@pytest.mark.parametrize(
    "query, scope, patient, code, reason",
    [
        ("stream=emg-p1", "patient/Observation.read", "p2", 4403, "patient p2"),  # another patient's stream
        ("session=enc-1", "patient/Observation.read", "p2", 4403, "patient p2"),
        ("stream=emg-p1", "user/Encounter.read", None, 4403, "Observation"),  # no Observation.read
        ("stream=nope", "user/Observation.read", None, 4404, "stream nope"),
        ("stream=emg-p1&session=enc-1", "system/Observation.read", None, 4400, "exactly one"),
        ("", "system/Observation.read", None, 4400, "exactly one"),
        ("stream=boom", "system/Observation.read", None, 4503, "try again"),
    ],
)
def test_refusals_close_with_a_code_and_reason(
    client: TestClient,
    issuer: DevIssuer,
    query: str,
    scope: str,
    patient: str | None,
    code: int,
    reason: str,
) -> None:
    headers = {"Authorization": f"Bearer {token(issuer, scope, patient)}"}
    with (
        client.websocket_connect(f"/biofeedback/ws?{query}", headers=headers) as ws,
        pytest.raises(WebSocketDisconnect) as refused,
    ):
        ws.receive_text()
    assert refused.value.code == code
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    "credentials", [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic eA=="}]
)
def test_no_valid_token_is_refused_with_4401(client: TestClient, credentials: dict[str, str]) -> None:
    with (
        client.websocket_connect("/biofeedback/ws?stream=emg-p1", headers=credentials) as ws,
        pytest.raises(WebSocketDisconnect) as refused,
    ):
        ws.receive_text()
    assert refused.value.code == 4401


def test_unsubscribes_when_the_client_leaves(client: TestClient, hub: LiveHub, issuer: DevIssuer) -> None:
    url = f"/biofeedback/ws?stream=emg-p1&access_token={token(issuer, 'system/Observation.read')}"
    with client.websocket_connect(url) as ws:
        receive(ws)
        assert hub.stats()["subscribers"] == 1
    wait_for(lambda: hub.stats()["subscribers"] == 0, timeout_s=10, what="the subscription to end")


def test_the_socket_closes_when_the_token_expires_unless_refreshed(
    client: TestClient, hub: LiveHub, issuer: DevIssuer, split: Split, kit: Kit
) -> None:
    verifier: JwtVerifier = client.app.state.token_verifier  # type: ignore[attr-defined]
    # Short-lived tokens; the refreshed socket's first, so it has expired by the time the other one closes.
    refreshed = issuer.mint("relearn-dev", "patient/Observation.read", patient="p1", ttl_s=3)
    left_alone = issuer.mint("relearn-dev", "user/Observation.read", ttl_s=3)
    first_expiry = verifier.verify(refreshed).expires_at
    assert first_expiry is not None
    with (
        client.websocket_connect(f"/biofeedback/ws?stream=emg-p1&access_token={refreshed}") as kept,
        client.websocket_connect(f"/biofeedback/ws?stream=emg-p1&access_token={left_alone}") as ended,
    ):
        assert receive(kept)["type"] == receive(ended)["type"] == "subscribed"
        # A fresh token must be for the same patient, and verify; the old one stays until then.
        for wrong, code in [(token(issuer, "patient/Observation.read", "p2"), 403), ("not-a-jwt", 401)]:
            kept.send_text(json.dumps({"type": "token", "accessToken": wrong}))
            reply = receive(kept)
            assert (reply["type"], reply["status"], reply["code"]) == ("token", "error", code)
        kept.send_text(
            json.dumps({"type": "token", "accessToken": token(issuer, "patient/Observation.read", "p1")})
        )
        reply = receive(kept)
        assert (reply["type"], reply["status"]) == ("token", "accepted")
        assert datetime.fromisoformat(reply["expiresAt"]) > first_expiry

        closed = kit.close_of(ended)
        assert (closed.code, closed.reason) == (4401, "token expired")
        assert datetime.now(UTC) >= first_expiry
        wait_for(
            lambda: hub.stats()["subscribers"] == 1, timeout_s=10, what="the expired subscription to end"
        )
        frames = emg_frames(split, "emg-p1", seconds=0.2)
        hub.publish(P1_STREAM, frames[0])
        assert receive(kept)["type"] == "emg"  # the refreshed socket lives on
