"""Device credentials and stream bindings, as a clinic hub, a clinician's app and a patient's app see them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition

from relearn.dev_issuer import RegisteredClient
from relearn.device_gateway.processing.repository import record_window
from relearn.devtools.apps import wait_for
from relearn.shared.events import DEVICE_RAW_BALANCE, CloudEvent
from relearn.shared.service import transaction

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Gateway, Kit


def _one_frame(kit: Kit, device: str, stream: str, sequence: int = 0) -> dict[str, Any]:
    return {
        "deviceId": device,
        "streamType": "emg",
        "streamId": stream,
        "sequence": sequence,
        "startTime": "2026-03-02T09:30:00Z",
        "samplingRateHz": 1000.0,
        "channels": [{"name": "vastus-medialis-left", "unit": "mV"}],
        "samples": [[0.01], [0.02], [-0.01]],
    }


def _issue(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue: dict[str, Any] = body["issue"][0]
    return issue


# -- device credentials ----------------------------------------------------------------------------------
def test_a_device_sends_for_itself(gateway: Gateway, kit: Kit) -> None:
    device = gateway.register_device()
    stream = gateway.open_stream(device)["id"]
    resp = gateway.send([_one_frame(kit, device, stream)], device)
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"] == [{"streamId": stream, "sequence": 0, "status": "accepted"}]


def test_a_hub_sends_for_the_sensors_it_carries(gateway: Gateway, kit: Kit) -> None:
    hub = gateway.register_device(deviceName=[{"name": "Clinic hub", "type": "user-friendly-name"}])
    sensor = gateway.register_device(parent=hub)
    stream = gateway.open_stream(sensor)["id"]
    resp = gateway.send([_one_frame(kit, sensor, stream)], sensor, headers=gateway.device_token(hub))
    assert resp.status_code == 200, resp.text
    assert resp.json()["results"][0]["status"] == "accepted"


def test_a_device_may_not_send_for_another_device(gateway: Gateway, kit: Kit) -> None:
    mine, other = gateway.register_device(), gateway.register_device()
    stream = gateway.open_stream(other)["id"]
    resp = gateway.send([_one_frame(kit, other, stream)], other, headers=gateway.device_token(mine))
    assert resp.status_code == 403
    assert _issue(resp)["code"] == "forbidden"
    assert f"Device/{other}" in _issue(resp)["diagnostics"]
    assert gateway.stream(stream)["frames"] == 0


def test_ingest_needs_device_credentials(gateway: Gateway, kit: Kit) -> None:
    device = gateway.register_device()
    stream = gateway.open_stream(device)["id"]
    frames = {"frames": [_one_frame(kit, device, stream)]}
    # A clinician's token (everything, but no device claim) cannot push frames.
    resp = gateway.client.post("/ingest/frames", json=frames, headers=gateway.token("user/*.* system/*.*"))
    assert resp.status_code == 403
    assert "device" in _issue(resp)["diagnostics"]
    # No token at all.
    resp = gateway.client.post("/ingest/frames", json=frames)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # A device token without Observation.write.
    gateway.issuer.clients.add(
        RegisteredClient(
            f"reader-{device}",
            ("system/Device.read",),
            client_secret="s",
            device_claim=True,
            devices=(device,),
        )
    )
    reader = gateway.issuer.mint(f"reader-{device}", "system/Device.read", device=device)
    resp = gateway.send(frames["frames"], device, headers={"Authorization": f"Bearer {reader}"})
    assert resp.status_code == 403
    assert gateway.stream(stream)["frames"] == 0


# -- stream bindings ---------------------------------------------------------------------------------------
def test_open_read_list_and_close_a_stream(gateway: Gateway, kit: Kit) -> None:
    device = gateway.register_device()
    patient, encounter = kit.uid("pat"), kit.uid("enc")
    created = gateway.open_stream(
        f"Device/{device}",
        "force-plate",
        patient=f"Patient/{patient}",
        session=encounter,
        protocol={"vision": "closed", "surface": "foam", "task": "quiet-standing"},
        targets={"swayRadiusMaxCm": 2.5},
    )
    assert created["device"] == device and created["patient"] == patient and created["session"] == encounter
    assert created["status"] == "open"
    assert (created["nextSequence"], created["frames"], created["samples"]) == (0, 0, 0)
    assert created["gaps"] == [] and created["origin"] is None
    assert created["protocol"] == {"vision": "closed", "surface": "foam", "task": "quiet-standing"}
    assert created["targets"] == {"swayRadiusMaxCm": 2.5}

    assert gateway.stream(created["id"]) == created
    other = gateway.open_stream(device, "force-plate", patient=patient, session=kit.uid("enc"))

    headers = gateway.token("user/Observation.read")
    listed = gateway.client.get(f"/streams?patient={patient}", headers=headers).json()
    assert [s["id"] for s in listed] == [other["id"], created["id"]]  # newest first
    listed = gateway.client.get(f"/streams?session={encounter}", headers=headers).json()
    assert [s["id"] for s in listed] == [created["id"]]

    write = gateway.token("user/Observation.write")
    closed = gateway.client.post(f"/streams/{created['id']}/close", headers=write)
    assert closed.status_code == 200, closed.text
    assert closed.json()["status"] == "closed" and closed.json()["closed"] is not None
    again = gateway.client.post(f"/streams/{created['id']}/close", headers=write)
    assert again.status_code == 200 and again.json()["closed"] == closed.json()["closed"]
    listed = gateway.client.get(f"/streams?patient={patient}&status=open", headers=headers).json()
    assert [s["id"] for s in listed] == [other["id"]]

    # The stream-closed event reaches the raw topic once, keyed by the device.
    reader = KafkaConsumer(bootstrap_servers=gateway.bootstrap, enable_auto_commit=False, group_id=None)
    seen: list[CloudEvent] = []
    try:
        partitions = wait_for(lambda: reader.partitions_for_topic(DEVICE_RAW_BALANCE), what="the topic")
        reader.assign([TopicPartition(DEVICE_RAW_BALANCE, p) for p in partitions])
        reader.seek_to_beginning()

        def poll() -> bool:
            for records in reader.poll(timeout_ms=200).values():
                for r in records:
                    event = CloudEvent.from_bytes(r.value)
                    if event.data.get("stream") == created["id"]:
                        seen.append(event)
            return bool(seen)

        wait_for(poll, what="the stream-closed event")
    finally:
        reader.close()
    assert [e.type for e in seen] == ["device.balance-stream-closed.v1"]
    assert seen[0].subject == device
    assert seen[0].data["protocol"]["vision"] == "closed" and seen[0].data["frames"] == 0

    # Frames for a closed stream are refused.
    frame = {**_one_frame(kit, device, created["id"]), "streamType": "force-plate"}
    frame["channels"] = list(kit.force_plate_channels)
    frame["samples"] = [[0, 0, 500, 1, 2, 0]]
    resp = gateway.send([frame], device)
    assert resp.status_code == 409
    assert _issue(resp)["expression"] == ["frames[0].streamId"]


def test_a_stream_needs_a_known_device(gateway: Gateway, kit: Kit) -> None:
    resp = gateway.client.post(
        "/streams",
        json={"device": kit.uid("nodevice"), "streamType": "emg", "patient": kit.uid("pat")},
        headers=gateway.token("user/Observation.write"),
    )
    assert resp.status_code == 422
    assert _issue(resp)["expression"] == ["device"]
    resp = gateway.client.post(
        "/streams",
        json={"device": gateway.register_device(), "streamType": "ecg", "patient": kit.uid("pat")},
        headers=gateway.token("user/Observation.write"),
    )
    assert resp.status_code == 400
    assert _issue(resp)["expression"] == ["streamType"]


def test_patient_tokens_see_only_their_own_streams(gateway: Gateway, kit: Kit) -> None:
    device = gateway.register_device()
    mine, theirs = kit.uid("pat"), kit.uid("pat")
    my_stream = gateway.open_stream(device, patient=mine)["id"]
    their_stream = gateway.open_stream(device, patient=theirs)["id"]
    headers = gateway.token("patient/Observation.read", patient=mine)

    assert gateway.client.get(f"/streams/{my_stream}", headers=headers).status_code == 200
    assert gateway.client.get(f"/streams/{their_stream}", headers=headers).status_code == 404
    listed = gateway.client.get("/streams", headers=headers).json()
    assert [s["id"] for s in listed] == [my_stream]
    assert gateway.client.get(f"/streams?patient={theirs}", headers=headers).json() == []

    # Patients do not set up or close recordings.
    write = gateway.token("patient/Observation.write patient/Observation.read", patient=mine)
    resp = gateway.client.post(
        "/streams", json={"device": device, "streamType": "emg", "patient": mine}, headers=write
    )
    assert resp.status_code == 403
    assert gateway.client.post(f"/streams/{my_stream}/close", headers=write).status_code == 403
    # No token, no streams.
    assert gateway.client.get(f"/streams/{my_stream}").status_code == 401


def test_a_device_reads_the_binding_it_sends_for(gateway: Gateway, kit: Kit) -> None:
    device, stranger = gateway.register_device(), gateway.register_device()
    stream = gateway.open_stream(device)["id"]
    resp = gateway.client.get(f"/streams/{stream}", headers=gateway.device_token(device))
    assert resp.status_code == 200 and resp.json()["nextSequence"] == 0
    assert gateway.client.get(f"/streams/{stream}", headers=gateway.device_token(stranger)).status_code == 404


def test_a_device_credential_writes_nothing_but_frames(gateway: Gateway, kit: Kit) -> None:
    """A hub's token cannot write clinical data, open or close bindings, nor read other data."""
    hub, other = gateway.register_device(), gateway.register_device()
    theirs = gateway.open_stream(other, patient=kit.uid("pat"))["id"]
    mine = gateway.open_stream(hub)["id"]
    device = {**gateway.device_token(hub), "Content-Type": "application/fhir+json"}
    for method, url, body in [
        ("POST", "/fhir/Device", {"resourceType": "Device", "status": "active"}),
        ("PUT", f"/fhir/Device/{hub}", {"resourceType": "Device", "id": hub, "status": "inactive"}),
        ("DELETE", f"/fhir/Device/{other}", None),
        ("POST", "/streams", {"device": hub, "streamType": "emg", "patient": kit.uid("pat")}),
        ("POST", f"/streams/{theirs}/close", None),
        ("POST", f"/streams/{mine}/close", None),
    ]:
        resp = gateway.client.request(method, url, json=body, headers=device)
        assert resp.status_code == 403, (method, url, resp.text)
        assert "Device credentials" in _issue(resp)["diagnostics"]
    for url in ["/fhir/Device", f"/fhir/Device/{hub}", "/streams"]:
        assert gateway.client.get(url, headers=device).status_code == 403, url
    assert gateway.stream(theirs)["status"] == "open" and gateway.stream(mine)["status"] == "open"
    # Its own stream's state stays readable.
    assert gateway.client.get(f"/streams/{mine}", headers=device).status_code == 200


def test_the_api_is_documented(gateway: Gateway) -> None:
    spec = gateway.client.get("/openapi.json").json()
    assert {"/streams", "/streams/{stream_id}", "/streams/{stream_id}/close", "/ingest/frames"} <= set(
        spec["paths"]
    )
    body = spec["paths"]["/ingest/frames"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    name = body["$ref"].rsplit("/", 1)[1]
    schemas = spec["components"]["schemas"]
    frame = schemas[schemas[name]["properties"]["frames"]["items"]["$ref"].rsplit("/", 1)[1]]
    assert {"deviceId", "streamId", "sequence", "startTime", "samplingRateHz", "samples"} <= set(
        frame["properties"]
    )
    assert "nextSequence" in schemas["StreamView"]["properties"]


def test_window_level_metrics_are_served_per_stream_and_only_to_who_may_read_it(
    gateway: Gateway, kit: Kit
) -> None:
    """The 1 s window metrics stay in the gateway (the FHIR surface has one summary per metric of a trial):
    ``GET /streams/{id}/windows`` serves the rows the metrics processor recorded, paged."""
    device, patient = gateway.register_device(), kit.uid("pat")
    stream = gateway.open_stream(device, patient=patient, protocol={"muscles": {"VM": "vastus-medialis"}})[
        "id"
    ]
    t0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    with transaction(gateway.engine) as session:
        for i in range(3):
            status = "gap" if i == 1 else "measured"
            value = None if i == 1 else 40.0 + i
            record_window(
                session,
                stream,
                i,
                status,
                t0 + timedelta(seconds=i),
                t0 + timedelta(seconds=i + 1),
                "no samples in this window" if i == 1 else None,
                [
                    {
                        "metric": "emg-rms",
                        "channel": "VM",
                        "muscle": "vastus-medialis",
                        "value": value,
                        "unit": "uV",
                        "status": "not-computable" if value is None else "measured",
                    }
                ],
            )
    read = gateway.token("user/Observation.read")
    body = gateway.client.get(f"/streams/{stream}/windows", headers=read).json()
    assert (body["stream"], body["total"], body["offset"]) == (stream, 3, 0)
    assert [w["status"] for w in body["windows"]] == ["measured", "gap", "measured"]
    first, gap, _ = body["windows"]
    assert first["metrics"] == [
        {
            "metric": "emg-rms",
            "channel": "VM",
            "muscle": "vastus-medialis",
            "value": 40.0,
            "unit": "uV",
            "status": "measured",
        }
    ]
    assert gap["reason"] == "no samples in this window" and gap["metrics"][0]["value"] is None
    page = gateway.client.get(f"/streams/{stream}/windows?offset=2&_count=5", headers=read).json()
    assert [w["index"] for w in page["windows"]] == [2] and page["total"] == 3
    # Bounded, and only for who may read the stream.
    assert gateway.client.get(f"/streams/{stream}/windows?_count=601", headers=read).status_code == 400
    other = gateway.token("patient/Observation.read", patient=kit.uid("pat"))
    assert gateway.client.get(f"/streams/{stream}/windows", headers=other).status_code == 404
    mine = gateway.token("patient/Observation.read", patient=patient)
    assert gateway.client.get(f"/streams/{stream}/windows", headers=mine).status_code == 200
    assert gateway.client.get(f"/streams/{stream}/windows").status_code == 401
