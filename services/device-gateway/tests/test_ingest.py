"""Ingest: real recordings in, the same samples out on the raw topics, nothing lost, doubled or reordered."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from starlette.websockets import WebSocketDisconnect

from relearn.device_gateway.config import Settings
from relearn.device_gateway.main import create_app
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.streams.repository import StreamInfo, load_recording_frames
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import DEVICE_RAW_BALANCE, DEVICE_RAW_EMG, CloudEvent

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Gateway, Kit

EMG_CHANNEL = [{"name": "vastus-lateralis-right", "unit": "mV"}]
DEVICE_SCOPE = "system/Observation.write"
UCI_CHANNELS = [{"name": f"ch{i}", "unit": "V"} for i in range(1, 9)]


def _samples_of(events: list[CloudEvent]) -> np.ndarray:
    return np.concatenate([np.asarray(e.data["frame"]["samples"], dtype=float) for e in events])


def _offsets_of(events: list[CloudEvent], t0: datetime) -> np.ndarray:
    """Each sample's time (s from t0) as a processor reads it from the events."""
    out = []
    for e in events:
        frame = e.data["frame"]
        start = (datetime.fromisoformat(frame["startTime"]) - t0).total_seconds()
        n = len(frame["samples"])
        rel = (
            np.asarray(frame["timestamps"])
            if "timestamps" in frame
            else np.arange(n) / frame["samplingRateHz"]
        )
        out.append(start + rel)
    return np.concatenate(out)


def _emg_stream(gateway: Gateway, kit: Kit) -> tuple[str, str, str]:
    device = gateway.register_device()
    patient = kit.uid("pat")
    stream = gateway.open_stream(
        device,
        "emg",
        patient=patient,
        session=kit.uid("enc"),
        protocol={"task": "knee-extension", "cueTime": 0.5},
        mvc={"vastus-lateralis-right": 0.8},
        targets={"emgPercentMvcMin": 30},
    )["id"]
    return device, patient, stream


def _emg_frames(kit: Kit, values: np.ndarray, device: str, stream: str) -> list[dict[str, Any]]:
    """Wire frames of a one-channel EMG recording at 1 kHz, 100 samples a frame."""
    return kit.frames_from(
        values,
        device=device,
        stream=stream,
        stream_type="emg",
        rate=1000.0,
        channels=EMG_CHANNEL,
        frame_len=100,
    )


def _issues(resp: Any) -> list[dict[str, Any]]:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def test_an_emg_recording_arrives_whole_and_once(gateway: Gateway, kit: Kit) -> None:
    times, values = kit.load_bmc_emg()
    device, patient, stream = _emg_stream(gateway, kit)
    frames = kit.frames_from(
        values,
        device=device,
        stream=stream,
        stream_type="emg",
        rate=1000.0,
        channels=EMG_CHANNEL,
        frame_len=200,
        offsets_s=times - times[0],
    )
    results = gateway.send_all(frames, device, batch=5)
    assert [r["status"] for r in results] == ["accepted"] * len(frames)
    assert [r["sequence"] for r in results] == list(range(len(frames)))

    binding = gateway.stream(stream)
    assert (binding["frames"], binding["samples"], binding["nextSequence"]) == (
        len(frames),
        3360,
        len(frames),
    )
    assert binding["gaps"] == []
    assert datetime.fromisoformat(binding["origin"]) == kit.t0
    assert binding["layout"]["samplingRateHz"] == 1000.0 and binding["layout"]["channels"] == EMG_CHANNEL

    # The same frames again (a device that lost the acks): reported duplicate, not published again.
    again = gateway.send_all(frames, device, batch=9)
    assert {r["status"] for r in again} == {"duplicate"}
    assert gateway.stream(stream)["frames"] == len(frames)

    events = kit.raw_events(gateway.bootstrap, DEVICE_RAW_EMG, stream, expected=len(frames))
    assert len(events) == len(frames)  # none lost, none doubled
    assert [e.data["frame"]["sequence"] for e in events] == list(range(len(frames)))  # in order
    assert {e.type for e in events} == {"device.emg-frame-received.v1"}
    assert {e.subject for e in events} == {device}
    first = events[0].data
    assert first["stream"] == stream and first["device"] == device and first["patient"] == patient
    assert first["streamType"] == "emg" and first["protocol"] == {"task": "knee-extension", "cueTime": 0.5}
    assert first["mvc"] == {"vastus-lateralis-right": 0.8} and first["targets"] == {"emgPercentMvcMin": 30}
    assert datetime.fromisoformat(first["origin"]) == kit.t0
    np.testing.assert_array_equal(_samples_of(events), values)
    np.testing.assert_allclose(_offsets_of(events, kit.t0), times - times[0], rtol=0, atol=1e-9)

    # The recording can be read back whole (the processor's whole-recording metrics).
    with Session(gateway.engine) as session:
        stored = load_recording_frames(session, stream)
    assert [f.sequence for f in stored] == list(range(len(frames)))
    np.testing.assert_array_equal(np.concatenate([f.to_arrays()[0] for f in stored]), values)


def test_a_skipped_sequence_is_a_gap_until_it_arrives(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:500], device, stream)
    resp = gateway.send([frames[0], frames[1], frames[3]], device)
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["results"]] == ["accepted"] * 3
    assert resp.json()["gaps"] == [{"streamId": stream, "expected": 2, "got": 3}]
    binding = gateway.stream(stream)
    assert binding["gaps"] == [{"expected": 2, "got": 3, "missing": 1}]
    assert binding["nextSequence"] == 4 and binding["frames"] == 3

    # The late frame is accepted (no new gap) and fills the hole; 4 follows on without a gap.
    resp = gateway.send([frames[2], frames[4]], device)
    assert resp.json()["gaps"] == []
    binding = gateway.stream(stream)
    assert binding["gaps"] == [{"expected": 2, "got": 3, "missing": 0}]
    assert (binding["frames"], binding["samples"], binding["nextSequence"]) == (5, 500, 5)


def test_an_invalid_frame_refuses_the_whole_batch(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:400], device, stream)
    frames[1]["samples"][7] = [0.1, 0.2]  # two values for one channel
    del frames[2]["samplingRateHz"]
    resp = gateway.send(frames, device)
    assert resp.status_code == 422, resp.text
    paths = {p for issue in _issues(resp) for p in issue.get("expression", [])}
    assert paths == {"frames[1].samples", "frames[2].samplingRateHz"}
    assert all(i["code"] == "invalid" for i in _issues(resp))
    assert gateway.stream(stream)["frames"] == 0  # frames[0] was fine, and not stored either

    # Stream checks name their field too: a new layout, another stream type, an unknown stream.
    good = _emg_frames(kit, values[:200], device, stream)
    relabelled = {**good[1], "channels": [{"name": "biceps-femoris-left", "unit": "mV"}]}
    resp = gateway.send([good[0], relabelled], device)
    assert resp.status_code == 422
    assert [i["expression"] for i in _issues(resp)] == [["frames[1].channels"]]
    resp = gateway.send([{**good[0], "streamId": kit.uid("nostream")}], device)
    assert resp.status_code == 422 and _issues(resp)[0]["expression"] == ["frames[0].streamId"]
    assert gateway.stream(stream)["frames"] == 0

    resp = gateway.send([good[0]], device)
    assert resp.status_code == 200
    resp = gateway.send([{**good[1], "samplingRateHz": 2000.0}], device)
    assert resp.status_code == 422 and _issues(resp)[0]["expression"] == ["frames[0].samplingRateHz"]

    resp = gateway.client.post(
        "/ingest/frames",
        content=b"{not json",
        headers={**gateway.device_token(device), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400


def test_sequences_are_bounded_and_ucum_counts_is_accepted(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:200], device, stream)
    for huge in (2**70, 2**62, 2**31):
        resp = gateway.send([{**frames[0], "sequence": huge}], device)
        assert resp.status_code == 422, resp.text
        assert _issues(resp)[0]["expression"] == ["frames[0].sequence"]
    assert gateway.stream(stream)["frames"] == 0 and gateway.stream(stream)["gaps"] == []

    counts = gateway.register_device()
    raw = gateway.open_stream(counts)["id"]
    frame = {
        **_emg_frames(kit, values[:100], counts, raw)[0],
        "channels": [{"name": "vastus-lateralis-right", "unit": "{counts}"}],
        "adc": {"resolutionBits": 16},
        "samples": [[v] for v in range(100)],
    }
    resp = gateway.send([frame], counts)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["status"] == "accepted"


def test_a_frame_too_large_for_one_event_must_be_split(gateway: Gateway, kit: Kit) -> None:
    device = gateway.register_device()
    stream = gateway.open_stream(device)["id"]
    rng = np.random.default_rng(7)
    channels = [{"name": f"ch{i}", "unit": "mV"} for i in range(8)]
    big = rng.normal(size=(10_000, 8))  # ~20 characters a value: about 1.7 MB of JSON
    frame = kit.frames_from(
        big, device=device, stream=stream, stream_type="emg", rate=2000.0, channels=channels, frame_len=10_000
    )[0]
    resp = gateway.send([frame], device)
    assert resp.status_code == 413
    assert _issues(resp)[0]["expression"] == ["frames[0]"] and "split" in _issues(resp)[0]["diagnostics"]
    assert gateway.stream(stream)["frames"] == 0


def test_a_balance_trial_arrives_whole(gateway: Gateway, kit: Kit) -> None:
    times, values = kit.load_balance("BDS00001.txt")
    device = gateway.register_device()
    stream = gateway.open_stream(
        device, "force-plate", protocol={"vision": "open", "surface": "firm"}, targets={"swayRadiusMaxCm": 3}
    )["id"]
    frames = kit.frames_from(
        values,
        device=device,
        stream=stream,
        stream_type="force-plate",
        rate=100.0,
        channels=list(kit.force_plate_channels),
        frame_len=100,
        offsets_s=times - times[0],
    )
    results = gateway.send_all(frames, device, batch=15)
    assert [r["status"] for r in results] == ["accepted"] * 60

    events = kit.raw_events(gateway.bootstrap, DEVICE_RAW_BALANCE, stream, expected=60)
    assert len(events) == 60
    assert {e.type for e in events} == {"device.balance-frame-received.v1"}
    assert [e.data["frame"]["sequence"] for e in events] == list(range(60))
    np.testing.assert_array_equal(_samples_of(events), values)
    np.testing.assert_allclose(_offsets_of(events, kit.t0), times - times[0], rtol=0, atol=1e-9)
    assert events[0].data["protocol"] == {"vision": "open", "surface": "firm"}
    assert gateway.stream(stream)["samples"] == 6000


def test_irregular_timestamps_are_kept_exactly(gateway: Gateway, kit: Kit) -> None:
    ms, values = kit.load_uci_gestures()
    device = gateway.register_device()
    stream = gateway.open_stream(device, "emg")["id"]
    offsets = (ms - ms[0]) / 1000.0
    frames = kit.frames_from(
        values,
        device=device,
        stream=stream,
        stream_type="emg",
        rate=1000.0,
        channels=UCI_CHANNELS,
        frame_len=500,
        offsets_s=offsets,
        irregular=True,
    )
    results = gateway.send_all(frames, device, batch=25)
    assert [r["status"] for r in results] == ["accepted"] * len(frames)

    events = kit.raw_events(gateway.bootstrap, DEVICE_RAW_EMG, stream, expected=len(frames))
    assert len(events) == len(frames)
    assert [e.data["frame"]["timestamps"] for e in events] == [f["timestamps"] for f in frames]
    np.testing.assert_array_equal(_samples_of(events), values)
    # Back to the file's integer milliseconds, sample for sample.
    np.testing.assert_array_equal(np.round(_offsets_of(events, kit.t0) * 1000.0) + ms[0], ms)

    with Session(gateway.engine) as session:
        stored = load_recording_frames(session, stream)
    assert [f.timestamps for f in stored] == [f["timestamps"] for f in frames]


def test_concurrent_resends_store_each_frame_once(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:1000], device, stream)
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: gateway.send(frames, device), range(4)))
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    statuses = [r.json()["results"] for r in responses]
    for seq in range(10):
        assert sorted(s[seq]["status"] for s in statuses) == [
            "accepted",
            "duplicate",
            "duplicate",
            "duplicate",
        ]
    binding = gateway.stream(stream)
    assert (binding["frames"], binding["samples"], binding["gaps"]) == (10, 1000, [])
    events = kit.raw_events(gateway.bootstrap, DEVICE_RAW_EMG, stream, expected=10)
    assert [e.data["frame"]["sequence"] for e in events] == list(range(10))


def test_websocket_ingest_acks_each_frame(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:500], device, stream)
    with gateway.client.websocket_connect("/ingest/ws", headers=gateway.device_token(device)) as ws:
        ws.send_text(json.dumps(frames[0]))
        assert ws.receive_json() == {"streamId": stream, "sequence": 0, "status": "accepted"}
        ws.send_text(json.dumps(frames[0]))
        assert ws.receive_json() == {"streamId": stream, "sequence": 0, "status": "duplicate"}
        ws.send_text(json.dumps({"frames": [frames[1], frames[3]]}))
        assert ws.receive_json() == {"streamId": stream, "sequence": 1, "status": "accepted"}
        assert ws.receive_json() == {
            "streamId": stream,
            "sequence": 3,
            "status": "accepted",
            "gap": {"expected": 2, "got": 3},
        }
        bad = {**frames[2], "samples": [[float("nan")]]}
        ws.send_text(json.dumps(bad).replace("NaN", '"x"'))
        ack = ws.receive_json()
        assert ack["status"] == "error" and ack["streamId"] == stream and ack["sequence"] == 2
        assert ack["issue"]["issue"][0]["expression"] == ["frames[0].samples[0][0]"]
    assert gateway.stream(stream)["frames"] == 3

    # The token may come as a query parameter (browsers); a missing one closes with 4401.
    token = gateway.device_token(device)["Authorization"].split()[1]
    with gateway.client.websocket_connect(f"/ingest/ws?access_token={token}") as ws:
        ws.send_text(json.dumps(frames[2]))
        assert ws.receive_json()["status"] == "accepted"
    with pytest.raises(WebSocketDisconnect) as refused, gateway.client.websocket_connect("/ingest/ws") as ws:
        ws.receive_json()
    assert refused.value.code == 4401
    user = gateway.token("user/*.*")
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        gateway.client.websocket_connect("/ingest/ws", headers=user) as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4403


def test_websocket_ingest_stops_at_token_expiry_unless_refreshed(gateway: Gateway, kit: Kit) -> None:
    _, values = kit.load_bmc_emg()
    device, _, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:300], device, stream)
    other = gateway.register_device()

    def device_token(device: str, ttl_s: int = 3600) -> str:
        gateway.issuer.clients.register_device("device-gateway-dev", device)
        token: str = gateway.issuer.mint("device-gateway-dev", DEVICE_SCOPE, device=device, ttl_s=ttl_s)
        return token

    short = [device_token(device, ttl_s=3) for _ in range(2)]  # expiring in 2-3 s
    expiries = [gateway.app.state.token_verifier.verify(t).expires_at for t in short]
    with (
        gateway.client.websocket_connect(f"/ingest/ws?access_token={short[0]}") as ended,
        gateway.client.websocket_connect(f"/ingest/ws?access_token={short[1]}") as kept,
    ):
        ended.send_text(json.dumps(frames[0]))
        assert ended.receive_json()["status"] == "accepted"
        # A fresh token must be for the same device and verify; the old one stays until then.
        for wrong, code in [(device_token(other), 403), ("not-a-jwt", 401)]:
            kept.send_text(json.dumps({"type": "token", "accessToken": wrong}))
            reply = kept.receive_json()
            assert (reply["type"], reply["status"], reply["code"]) == ("token", "error", code)
        kept.send_text(json.dumps({"type": "token", "accessToken": device_token(device)}))
        reply = kept.receive_json()
        assert (reply["type"], reply["status"]) == ("token", "accepted")
        kept.send_text(json.dumps(frames[1]))
        assert kept.receive_json()["status"] == "accepted"

        wait_for(lambda: datetime.now(UTC) >= max(expiries), timeout_s=10, what="the short tokens to expire")
        ended.send_text(json.dumps(frames[2]))  # too late: not stored, the socket closes
        closed = kit.close_of(ended)
        assert (closed.code, closed.reason) == (4401, "token expired")
        assert gateway.stream(stream)["frames"] == 2
        kept.send_text(json.dumps(frames[2]))  # the refreshed socket goes on (and frame 2 is new to it)
        assert kept.receive_json() == {"streamId": stream, "sequence": 2, "status": "accepted"}
    assert gateway.stream(stream)["frames"] == 3


# -- back-pressure: its own app, whose relay only runs when the test says so ---------------------------
@pytest.fixture(scope="module")
def held(
    pg_database: Callable[[str], str], broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Any]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.device_gateway",
        Settings,
        create_app,
        database_url=pg_database("device_gateway_held"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
        run_workers=False,  # the relay does not run by itself: the backlog only grows
        ingest_max_backlog=2,
        ingest_backlog_cache_s=0,
    )
    with TestClient(app) as client:
        yield client, issuer


def test_a_backlog_above_the_limit_is_429_and_nothing_is_stored(
    held: tuple[TestClient, Any], kit: Kit
) -> None:
    client, issuer = held
    user = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'user/*.*')}"}
    device = kit.uid("dev")
    resp = client.put(
        f"/fhir/Device/{device}",
        json={"resourceType": "Device", "id": device, "status": "active"},
        headers={**user, "Content-Type": "application/fhir+json"},
    )
    assert resp.status_code == 201, resp.text
    stream = client.post(
        "/streams", json={"device": device, "streamType": "emg", "patient": "p1"}, headers=user
    )
    stream_id = stream.json()["id"]
    _, values = kit.load_bmc_emg()
    frames = _emg_frames(kit, values[:500], device, stream_id)
    issuer.clients.register_device("device-gateway-dev", device)
    token = issuer.mint("device-gateway-dev", "system/Observation.write", device=device)
    dev = {"Authorization": f"Bearer {token}"}

    assert client.post("/ingest/frames", json={"frames": frames[:3]}, headers=dev).status_code == 200
    refused = client.post("/ingest/frames", json={"frames": frames[3:]}, headers=dev)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert _issues(refused)[0]["code"] == "throttled"
    with client.websocket_connect("/ingest/ws", headers=dev) as ws:
        ws.send_text(json.dumps(frames[3]))
        assert ws.receive_json() == {
            "streamId": stream_id,
            "sequence": 3,
            "status": "retry",
            "retryAfterMs": 1000,
        }
    assert client.get(f"/streams/{stream_id}", headers=user).json()["frames"] == 3

    # The broker catches up (the relay publishes the backlog): the same frames are taken.
    relay = client.app.state.workers.relay  # type: ignore[attr-defined]
    while relay.relay_once():  # publish the whole backlog
        continue
    resp = client.post("/ingest/frames", json={"frames": frames[3:]}, headers=dev)
    assert resp.status_code == 200, resp.text
    assert [r["status"] for r in resp.json()["results"]] == ["accepted", "accepted"]
    relay.stop()


def test_after_commit_hooks_see_each_accepted_frame_once(gateway: Gateway, kit: Kit) -> None:
    """Where live biofeedback plugs in: called after the commit, never for duplicates or refusals."""
    _, values = kit.load_bmc_emg()
    device, patient, stream = _emg_stream(gateway, kit)
    frames = _emg_frames(kit, values[:300], device, stream)
    seen: list[tuple[StreamInfo, SensorFrame]] = []
    closed: list[StreamInfo] = []
    ingestor = gateway.app.state.ingestor
    ingestor.after_commit.append(lambda info, frame: seen.append((info, frame)))
    ingestor.after_close.append(closed.append)
    try:
        assert gateway.send(frames[:2], device).status_code == 200
        assert gateway.send(frames[:2], device).status_code == 200  # duplicates
        assert gateway.send([{**frames[2], "samplingRateHz": 5.0}], device).status_code == 422
        assert gateway.send([frames[2]], device).status_code == 200
        write = gateway.token("user/Observation.write")
        assert gateway.client.post(f"/streams/{stream}/close", headers=write).status_code == 200
        # After the close, a resent frame is still just a duplicate (its ack was lost); a new one is 409.
        resent = gateway.send([frames[1]], device)
        assert resent.status_code == 200 and resent.json()["results"][0]["status"] == "duplicate"
        late = _emg_frames(kit, values[:400], device, stream)[3]
        assert gateway.send([late], device).status_code == 409
    finally:
        ingestor.after_commit.pop()
        ingestor.after_close.pop()
    assert [f.sequence for _, f in seen] == [0, 1, 2]
    info = seen[0][0]
    assert (info.id, info.device, info.patient, info.stream_type) == (stream, device, patient, "emg")
    assert info.mvc == {"vastus-lateralis-right": 0.8} and info.targets == {"emgPercentMvcMin": 30}
    assert info.origin == kit.t0 and info.to_json()["streamType"] == "emg"
    np.testing.assert_array_equal(seen[2][1].to_arrays()[0], values[200:300])
    assert [c.id for c in closed] == [stream] and closed[0].status == "closed"
