"""The Device convention: what a registered Device declares, what the gateway refuses, and frames checked
against it — as a clinic registering its sensors and an EHR resolving the codes see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlmodel import Session

from relearn.device_gateway.device_profile import (
    KIND_SYSTEM,
    PROPERTY_SYSTEM,
    UCUM,
    AdcSpec,
    ChannelSpec,
    DeviceKind,
    DeviceSpec,
    DeviceSpecCache,
    PropertyCode,
    check_device,
    defined_codes,
    device_spec,
    frame_matches_device,
)
from relearn.device_gateway.device_profile.domain.codes import MUSCLE_SYSTEM
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.device_gateway.streams.domain import muscle_codes
from relearn.shared.fhir import InvalidResource

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Gateway, Kit

FHIR_JSON = {"Content-Type": "application/fhir+json"}


# -- building Devices the way the convention says ------------------------------------------------------------
def kind(code: str) -> dict[str, Any]:
    return {"coding": [{"system": KIND_SYSTEM, "code": code}]}


def prop(code: str, **values: Any) -> dict[str, Any]:
    return {"type": {"coding": [{"system": PROPERTY_SYSTEM, "code": code}]}, **values}


def qty(value: float | None = None, code: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"system": UCUM}
    if value is not None:
        out["value"] = value
    if code is not None:
        out["unit"] = out["code"] = code
    return out


def rate(hz: float) -> dict[str, Any]:
    return prop("sampling-rate", valueQuantity=[qty(hz, "Hz")])


def channel(name: str, unit: str | None = None) -> dict[str, Any]:
    entry = prop("channel", valueCode=[{"text": name}])
    if unit is not None:
        entry["valueQuantity"] = [qty(code=unit)]
    return entry


def emg_device(device_id: str = "emg-7", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "id": device_id,
        "status": "active",
        "type": kind("emg-sensor"),
        "serialNumber": "DL-2231-0042",
        "property": [
            rate(1000),
            channel("vastus-medialis-left", "mV"),
            channel("vastus-lateralis-left", "{counts}"),
            prop("adc-resolution", valueQuantity=[qty(16, "{bits}")]),
            prop("adc-gain", valueQuantity=[qty(0.000195, "mV")]),
            prop("adc-offset", valueQuantity=[qty(32768, "{counts}")]),
        ],
        **extra,
    }


def refused(device: dict[str, Any]) -> list[tuple[str, str]]:
    """(expression, diagnostics) of every issue the validator reports (none: it accepts the Device)."""
    try:
        check_device(device)
    except InvalidResource as exc:
        return [(i.expression[0], i.diagnostics) for i in exc.issues]
    return []


def frame(kit: Kit, **fields: Any) -> SensorFrame:
    wire: dict[str, Any] = {
        "deviceId": "emg-7",
        "streamType": "emg",
        "streamId": "s-1",
        "sequence": 0,
        "startTime": kit.t0.isoformat(),
        "samplingRateHz": 1000.0,
        "channels": [{"name": "vastus-medialis-left", "unit": "mV"}],
        "samples": [[0.01], [0.02]],
        **fields,
    }
    return SensorFrame.model_validate(wire)


# -- parsing -------------------------------------------------------------------------------------------------
def test_a_device_following_the_convention_reads_as_its_spec() -> None:
    spec = device_spec(emg_device(parent={"reference": "Device/hub-1"}))
    assert spec == DeviceSpec(
        id="emg-7",
        kind=DeviceKind.EMG_SENSOR,
        serial="DL-2231-0042",
        parent="hub-1",
        sampling_rate_hz=1000.0,
        channels=(
            ChannelSpec("vastus-medialis-left", "mV"),
            ChannelSpec("vastus-lateralis-left", "{counts}"),
        ),
        adc=AdcSpec(resolution_bits=16, gain=0.000195, gain_unit="mV", offset=32768.0),
    )
    assert spec.stream_types == frozenset({StreamType.EMG})
    assert refused(emg_device()) == []


def test_a_load_cell_board_declares_its_geometry_in_any_length_unit() -> None:
    board = {
        "resourceType": "Device",
        "type": kind("load-cell-board"),
        "property": [
            rate(100),
            *(channel(name, "N") for name in ("TL", "TR", "BL", "BR")),
            prop("load-cell-spacing", valueQuantity=[qty(433, "mm"), qty(23.8, "cm")]),
        ],
    }
    spec = device_spec(board)
    assert spec.kind is DeviceKind.LOAD_CELL_BOARD and spec.stream_types == frozenset({StreamType.LOAD_CELLS})
    assert spec.load_cell_spacing_cm == pytest.approx((43.3, 23.8))
    assert [c.name for c in spec.channels] == ["TL", "TR", "BL", "BR"]


def test_devices_without_the_convention_declare_nothing_and_other_codings_are_left_alone() -> None:
    assert device_spec({"resourceType": "Device", "status": "active"}) == DeviceSpec()
    ehr_coded = {
        "resourceType": "Device",
        "type": {"coding": [{"system": "http://snomed.info/sct", "code": "49062001"}]},
        "property": [{"type": {"text": "colour"}, "valueCode": [{"text": "blue"}]}],
    }
    assert refused(ehr_coded) == []
    assert device_spec(ehr_coded).kind is None
    # A Device stored before the checks: what is malformed is simply not declared.
    old = {"resourceType": "Device", "property": [rate(-5), channel("Fz", "parsec"), channel("Fz", "N")]}
    spec = device_spec(old)
    assert spec.sampling_rate_hz is None
    assert spec.channels == (ChannelSpec("Fz", None),)


def test_the_validator_names_every_element_that_breaks_the_convention() -> None:
    device = {
        "resourceType": "Device",
        "id": "emg-9",
        "type": kind("emg-sensor"),
        "parent": {"reference": "Patient/p-1"},
        "property": [
            rate(1000),
            prop("sampling-rate", valueQuantity=[qty(0, "Hz")]),
            channel("biceps", "N"),
            channel("triceps", "mV"),
            channel("triceps", "mV"),
            prop("adc-resolution", valueQuantity=[qty(40, "{bits}")]),
            prop("stiffness", valueQuantity=[qty(3)]),
        ],
    }
    where = [w for w, _ in refused(device)]
    assert sorted(where) == sorted(
        [
            "Device.property[1]",  # sampling-rate twice
            "Device.property[2].valueQuantity[0].code",  # N is no EMG unit
            "Device.property[4].valueCode[0].text",  # triceps twice
            "Device.property[5].valueQuantity[0].value",  # 40-bit ADC
            "Device.property[6].type.coding[0].code",  # not a device-property code
            "Device.parent.reference",
        ]
    )
    assert refused({"resourceType": "Device", "property": [rate(0)]}) == [
        (
            "Device.property[0].valueQuantity[0].value",
            "Device.property[0].valueQuantity[0].value: "
            "the sampling rate must be a positive number of Hz, not 0",
        )
    ]
    assert [w for w, _ in refused({"resourceType": "Device", "type": kind("eeg-cap")})] == [
        "Device.type.coding[0].code"
    ]
    assert [
        w for w, _ in refused({"resourceType": "Device", "id": "x", "parent": {"reference": "Device/x"}})
    ] == ["Device.parent.reference"]
    hub_with_channels = {"resourceType": "Device", "type": kind("clinic-gateway"), "property": [channel("x")]}
    assert [w for w, _ in refused(hub_with_channels)] == ["Device.property[0]"]
    plate = {"resourceType": "Device", "type": kind("force-plate"), "property": [channel("TL", "N")]}
    assert [w for w, _ in refused(plate)] == ["Device.property[0].valueCode[0].text"]


def test_the_shipped_code_systems_define_exactly_the_codes_the_gateway_uses() -> None:
    assert defined_codes(KIND_SYSTEM) == {k.value for k in DeviceKind}
    assert defined_codes(PROPERTY_SYSTEM) == {p.value for p in PropertyCode}


# -- frames against the Device -------------------------------------------------------------------------------
def test_a_frame_that_fits_its_device_passes(kit: Kit) -> None:
    spec = device_spec(emg_device())
    assert frame_matches_device(spec, frame(kit)) == []
    # Within 1 % of the declared rate; a subset of the channels; counts converted to the declared unit.
    counts = frame(
        kit,
        samplingRateHz=1005.0,
        channels=[{"name": "vastus-medialis-left", "unit": "counts"}],
        adc={"resolutionBits": 16, "transfer": {"gain": 0.000195, "offset": 32768, "unit": "mV"}},
        samples=[[32768], [33000]],
    )
    assert frame_matches_device(spec, counts) == []
    # A Device that declares nothing accepts anything.
    assert frame_matches_device(DeviceSpec(), frame(kit, samplingRateHz=4.0)) == []


def test_the_checker_names_what_contradicts_the_device(kit: Kit) -> None:
    spec = device_spec(emg_device())
    wrong = frame(
        kit,
        samplingRateHz=2000.0,
        channels=[
            {"name": "vastus-medialis-left", "unit": "uV"},
            {"name": "vastus-lateralis-left", "unit": "counts"},
            {"name": "gastrocnemius", "unit": "mV"},
        ],
        adc={"resolutionBits": 12},
        samples=[[1.0, 2.0, 3.0]],
    )
    issues = frame_matches_device(spec, wrong, "frames[3]")
    assert [i.expression for i in issues] == [
        ["frames[3].samplingRateHz"],
        ["frames[3].channels[0].unit"],
        ["frames[3].channels[2].name"],
        ["frames[3].adc.resolutionBits"],
    ]
    assert "2000 Hz is not the 1000 Hz Device/emg-7 declares" in issues[0].diagnostics
    gain = frame(
        kit,
        channels=[{"name": "vastus-lateralis-left", "unit": "counts"}],
        adc={"resolutionBits": 16, "transfer": {"gain": 0.0002, "offset": 32768, "unit": "mV"}},
        samples=[[1.0]],
    )
    assert [i.expression for i in frame_matches_device(spec, gain)] == [["frame.adc.transfer.gain"]]
    same_gain_in_uv = frame(
        kit,
        channels=[{"name": "vastus-lateralis-left", "unit": "counts"}],
        adc={"resolutionBits": 16, "transfer": {"gain": 0.195, "offset": 32768, "unit": "uV"}},
        samples=[[1.0]],
    )
    assert frame_matches_device(spec, same_gain_in_uv) == []


def test_the_device_kind_decides_the_stream_type(kit: Kit) -> None:
    plate = DeviceSpec(id="bp-1", kind=DeviceKind.FORCE_PLATE)
    issues = frame_matches_device(plate, frame(kit), "frames[0]")
    assert [i.expression for i in issues] == [["frames[0].streamType"]]
    assert "force-plate" in issues[0].diagnostics
    hub = DeviceSpec(id="hub-1", kind=DeviceKind.CLINIC_GATEWAY)
    assert [i.expression for i in frame_matches_device(hub, frame(kit))] == [["frame.streamType"]]
    cop = frame(
        kit,
        streamType="cop",
        channels=[{"name": "x", "unit": "cm"}, {"name": "y", "unit": "cm"}],
        samples=[[0.1, 0.2]],
    )
    assert frame_matches_device(DeviceSpec(kind=DeviceKind.COP_BOARD), cop) == []
    assert frame_matches_device(DeviceSpec(kind=DeviceKind.LOAD_CELL_BOARD), cop) != []


# -- through the gateway's FHIR API --------------------------------------------------------------------------
def _put(gateway: Gateway, device: dict[str, Any]) -> Any:
    return gateway.client.put(
        f"/fhir/Device/{device['id']}",
        json=device,
        headers={**gateway.token("user/Device.write"), **FHIR_JSON},
    )


def _read(gateway: Gateway, device_id: str) -> Any:
    return gateway.client.get(f"/fhir/Device/{device_id}", headers=gateway.token("user/Device.read"))


def _expressions(resp: Any) -> list[str]:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [e for issue in body["issue"] for e in issue.get("expression", [])]


def test_a_clinic_registers_a_hub_and_its_sensor_with_their_declarations(gateway: Gateway, kit: Kit) -> None:
    hub: dict[str, Any] = {
        "resourceType": "Device",
        "id": kit.uid("hub"),
        "status": "active",
        "type": kind("clinic-gateway"),
    }
    assert _put(gateway, hub).status_code == 201
    sensor = emg_device(kit.uid("emg"), parent={"reference": f"Device/{hub['id']}"})
    resp = _put(gateway, sensor)
    assert resp.status_code == 201, resp.text
    stored = _read(gateway, sensor["id"]).json()
    spec = device_spec(stored)
    assert (spec.kind, spec.parent, spec.sampling_rate_hz) == (DeviceKind.EMG_SENSOR, hub["id"], 1000.0)
    # Searchable by kind, as an EHR would look for the clinic's EMG sensors.
    found = gateway.client.get(
        "/fhir/Device",
        params={"type": f"{KIND_SYSTEM}|emg-sensor", "_id": sensor["id"]},
        headers=gateway.token("user/Device.read"),
    )
    assert found.status_code == 200 and found.json()["total"] == 1


@pytest.mark.parametrize(
    ("properties", "expression"),
    [
        ([rate(0)], "Device.property[0].valueQuantity[0].value"),
        ([rate(-250)], "Device.property[0].valueQuantity[0].value"),
        ([rate(1000), channel("biceps", "furlong")], "Device.property[1].valueQuantity[0].code"),
        ([channel("biceps", "mV"), channel("biceps", "mV")], "Device.property[1].valueCode[0].text"),
    ],
    ids=["zero-rate", "negative-rate", "unknown-unit", "duplicate-channel"],
)
def test_a_device_breaking_the_convention_is_refused_and_not_stored(
    gateway: Gateway, kit: Kit, properties: list[dict[str, Any]], expression: str
) -> None:
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": kit.uid("emg"),
        "type": kind("emg-sensor"),
        "property": properties,
    }
    resp = _put(gateway, device)
    assert resp.status_code == 400, resp.text
    assert expression in _expressions(resp)
    assert _read(gateway, device["id"]).status_code == 404
    # POST the same: refused too.
    device.pop("id")
    resp = gateway.client.post(
        "/fhir/Device", json=device, headers={**gateway.token("user/Device.write"), **FHIR_JSON}
    )
    assert resp.status_code == 400 and expression in _expressions(resp)


def test_an_update_breaking_the_convention_leaves_the_device_as_it_was(gateway: Gateway, kit: Kit) -> None:
    device = emg_device(kit.uid("emg"))
    assert _put(gateway, device).status_code == 201
    broken = {**device, "property": [rate(1000), channel("a", "mV"), channel("a", "mV")]}
    resp = _put(gateway, broken)
    assert resp.status_code == 400
    assert _expressions(resp) == ["Device.property[2].valueCode[0].text"]
    current = _read(gateway, device["id"]).json()
    assert current["meta"]["versionId"] == "1"
    assert device_spec(current).channels == device_spec(device).channels


def test_a_parent_must_be_a_clinic_gateway_device(gateway: Gateway, kit: Kit) -> None:
    device = emg_device(kit.uid("emg"), parent={"reference": "Patient/p-1"})
    resp = _put(gateway, device)
    assert resp.status_code == 400 and _expressions(resp) == ["Device.parent.reference"]
    # A registered Device that is not a clinic gateway cannot carry sensors.
    other = emg_device(kit.uid("emg"))
    assert _put(gateway, other).status_code == 201
    resp = _put(gateway, emg_device(kit.uid("emg"), parent={"reference": f"Device/{other['id']}"}))
    assert resp.status_code == 422 and _expressions(resp) == ["Device.parent"]
    assert "not a clinic-gateway" in resp.json()["issue"][0]["diagnostics"]


def test_a_transaction_registers_a_hub_and_its_sensor_together(gateway: Gateway, kit: Kit) -> None:
    hub_urn = "urn:uuid:5f1c35a2-8a44-4b8e-9a52-0d5b8e1e2b11"
    sensor = emg_device(kit.uid("emg"), parent={"reference": hub_urn})
    sensor.pop("id")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": hub_urn,
                "resource": {"resourceType": "Device", "status": "active", "type": kind("clinic-gateway")},
                "request": {"method": "POST", "url": "Device"},
            },
            {"resource": sensor, "request": {"method": "POST", "url": "Device"}},
        ],
    }
    resp = gateway.client.post(
        "/fhir", json=bundle, headers={**gateway.token("user/Device.write"), **FHIR_JSON}
    )
    assert resp.status_code == 200, resp.text
    hub_id, sensor_id = (e["response"]["location"].split("/")[1] for e in resp.json()["entry"])
    assert device_spec(_read(gateway, sensor_id).json()).parent == hub_id


def test_the_code_systems_are_published_read_only(gateway: Gateway) -> None:
    headers = gateway.token("user/CodeSystem.read")
    for cs_id, url, codes in (
        ("device-kind", KIND_SYSTEM, {k.value for k in DeviceKind}),
        ("device-property", PROPERTY_SYSTEM, {p.value for p in PropertyCode}),
        ("muscle", MUSCLE_SYSTEM, muscle_codes()),
    ):
        resp = gateway.client.get(f"/fhir/CodeSystem/{cs_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        assert resp.json()["url"] == url
        assert {c["code"] for c in resp.json()["concept"]} == codes
        found = gateway.client.get("/fhir/CodeSystem", params={"url": url}, headers=headers).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [cs_id]
    write = gateway.client.put(
        "/fhir/CodeSystem/device-kind",
        json={"resourceType": "CodeSystem", "id": "device-kind", "status": "draft", "content": "complete"},
        headers={**gateway.token("user/CodeSystem.write"), **FHIR_JSON},
    )
    assert write.status_code == 405
    metadata = gateway.client.get("/fhir/metadata").json()
    assert "CodeSystem" in {r["type"] for r in metadata["rest"][0]["resource"]}


# -- stream bindings against the Device ----------------------------------------------------------------------
def _bind(gateway: Gateway, kit: Kit, device: str, stream_type: str, **body: Any) -> Any:
    payload = {"device": device, "streamType": stream_type, "patient": kit.uid("pat"), **body}
    return gateway.client.post("/streams", json=payload, headers=gateway.token("user/Observation.write"))


def test_a_stream_binding_must_fit_the_device_kind(gateway: Gateway, kit: Kit) -> None:
    emg = emg_device(kit.uid("emg"))
    assert _put(gateway, emg).status_code == 201
    resp = _bind(gateway, kit, emg["id"], "force-plate")
    assert resp.status_code == 422
    issue = resp.json()["issue"][0]
    assert issue["expression"] == ["streamType"]
    assert "emg-sensor" in issue["diagnostics"] and "force-plate" in issue["diagnostics"]
    assert _bind(gateway, kit, emg["id"], "emg").status_code == 201
    # %MVC only for channels the sensor has.
    resp = _bind(gateway, kit, emg["id"], "emg", mvc={"vastus-medialis-left": 0.8, "soleus": 0.5})
    assert resp.status_code == 422 and resp.json()["issue"][0]["expression"] == ["mvc.soleus"]
    # A hub records nothing itself.
    hub: dict[str, Any] = {
        "resourceType": "Device",
        "id": kit.uid("hub"),
        "status": "active",
        "type": kind("clinic-gateway"),
    }
    assert _put(gateway, hub).status_code == 201
    resp = _bind(gateway, kit, hub["id"], "emg")
    assert resp.status_code == 422 and resp.json()["issue"][0]["expression"] == ["streamType"]
    # A Device without a kind takes any stream type, as before.
    plain = gateway.register_device()
    assert _bind(gateway, kit, plain, "cop").status_code == 201


def test_an_emg_binding_names_muscles_pairs_and_reference_among_the_device_channels(
    gateway: Gateway, kit: Kit
) -> None:
    emg = emg_device(kit.uid("emg"))
    assert _put(gateway, emg).status_code == 201
    protocol = {
        "muscles": {"vastus-medialis-left": "vastus-medialis", "vastus-lateralis-left": "vastus-lateralis"},
        "onsetReference": "vastus-lateralis-left",
        "pairs": [{"agonist": "vastus-medialis-left", "antagonist": "vastus-lateralis-left"}],
        "cueTime": 1.5,
    }
    created = _bind(gateway, kit, emg["id"], "emg", protocol=protocol)
    assert created.status_code == 201, created.text
    assert created.json()["protocol"] == protocol

    def refused(**changes: Any) -> tuple[int, list[str], str]:
        resp = _bind(gateway, kit, emg["id"], "emg", protocol={**protocol, **changes})
        issue = resp.json()["issue"][0]
        return resp.status_code, issue["expression"], issue["diagnostics"]

    # A muscle that is not on the published (SENIAM) list.
    status, where, why = refused(muscles={"vastus-medialis-left": "vmo"})
    assert (status, where) == (422, ["protocol.muscles.vastus-medialis-left"])
    assert "/fhir/CodeSystem/muscle" in why
    # Channels the Device does not have: in muscles, as the reference, in a pair.
    assert refused(muscles={"soleus-left": "soleus"})[:2] == (422, ["protocol.muscles.soleus-left"])
    assert refused(onsetReference="soleus-left")[:2] == (422, ["protocol.onsetReference"])
    bad_pair = [{"agonist": "vastus-medialis-left", "antagonist": "biceps-femoris-left"}]
    assert refused(pairs=bad_pair)[:2] == (422, ["protocol.pairs[0].antagonist"])
    # A muscle is not its own antagonist; a pair is declared once (either way round).
    same = [{"agonist": "vastus-medialis-left", "antagonist": "vastus-medialis-left"}]
    assert refused(pairs=same)[:2] == (422, ["protocol.pairs[0]"])
    twice = [protocol["pairs"][0], {"agonist": "vastus-lateralis-left", "antagonist": "vastus-medialis-left"}]
    assert refused(pairs=twice)[:2] == (422, ["protocol.pairs[1]"])
    # A pair without an antagonist is malformed (400 naming the field), not a server error.
    resp = _bind(gateway, kit, emg["id"], "emg", protocol={"pairs": [{"agonist": "vastus-medialis-left"}]})
    assert resp.status_code == 400 and resp.json()["issue"][0]["expression"] == [
        "protocol.pairs[0].antagonist"
    ]
    # A Device that declares no channels: only the muscle names are checked.
    plain = gateway.register_device()
    assert _bind(gateway, kit, plain, "emg", protocol={"muscles": {"ch1": "soleus"}}).status_code == 201
    resp = _bind(gateway, kit, plain, "emg", protocol={"muscles": {"ch1": "calf"}})
    assert resp.status_code == 422 and resp.json()["issue"][0]["expression"] == ["protocol.muscles.ch1"]


def test_a_load_cell_board_binding_gets_the_board_geometry(gateway: Gateway, kit: Kit) -> None:
    board: dict[str, Any] = {
        "resourceType": "Device",
        "id": kit.uid("board"),
        "status": "active",
        "type": kind("load-cell-board"),
        "property": [prop("load-cell-spacing", valueQuantity=[qty(43.3, "cm"), qty(23.8, "cm")])],
    }
    assert _put(gateway, board).status_code == 201
    binding = _bind(gateway, kit, board["id"], "load-cells", protocol={"vision": "open"})
    assert binding.status_code == 201, binding.text
    assert binding.json()["protocol"] == {"vision": "open", "boardLxCm": 43.3, "boardLyCm": 23.8}
    # What the binding says wins over the Device.
    own = _bind(gateway, kit, board["id"], "load-cells", protocol={"boardLxCm": 40, "boardLyCm": 20})
    assert own.json()["protocol"] == {"boardLxCm": 40.0, "boardLyCm": 20.0}


def test_device_specs_are_cached_and_dropped_when_the_device_is_written(gateway: Gateway, kit: Kit) -> None:
    specs: DeviceSpecCache = gateway.app.state.device_specs
    device = emg_device(kit.uid("emg"))
    assert _put(gateway, device).status_code == 201
    with Session(gateway.engine) as session:
        assert specs.get(session, device["id"]) == device_spec(_read(gateway, device["id"]).json())
        changed = {**device, "property": [rate(2000), channel("vastus-medialis-left", "uV")]}
        assert _put(gateway, changed).status_code == 200
        spec = specs.get(session, device["id"])
        assert spec is not None and spec.sampling_rate_hz == 2000.0
        assert specs.get(session, kit.uid("unknown")) is None


def test_device_specs_expire_after_their_time_to_live(gateway: Gateway, kit: Kit) -> None:
    now = [0.0]
    specs = DeviceSpecCache(ttl_s=5.0, clock=lambda: now[0])
    device = emg_device(kit.uid("emg"))
    assert _put(gateway, device).status_code == 201
    with Session(gateway.engine) as session:
        first = specs.get(session, device["id"])
        assert first is not None and first.sampling_rate_hz == 1000.0
        # Changed elsewhere (this cache is not the app's, so no hook tells it).
        assert _put(gateway, {**device, "property": [rate(500)]}).status_code == 200
        now[0] = 4.0
        assert specs.get(session, device["id"]) == first
        now[0] = 5.5
        fresh = specs.get(session, device["id"])
        assert fresh is not None and fresh.sampling_rate_hz == 500.0


def test_the_device_example_files_are_still_accepted() -> None:
    examples = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fhir-examples" / "R4"
    for path in sorted(examples.glob("Device-*.json")):
        assert refused(json.loads(path.read_text())) == [], path.name


def test_ingest_refuses_a_first_frame_that_contradicts_its_device(gateway: Gateway, kit: Kit) -> None:
    device = emg_device(kit.uid("emg"))
    assert _put(gateway, device).status_code == 201
    stream = gateway.open_stream(device["id"], "emg")
    wire = frame(kit, deviceId=device["id"], streamId=stream["id"]).to_wire()

    wrong_rate = gateway.send([{**wire, "samplingRateHz": 2000.0}], device["id"])
    assert wrong_rate.status_code == 422, wrong_rate.text
    assert _expressions(wrong_rate) == ["frames[0].samplingRateHz"]
    assert gateway.stream(stream["id"])["frames"] == 0, "nothing of the refused batch is stored"

    right = gateway.send([wire], device["id"])
    assert right.status_code == 200, right.text
    assert gateway.stream(stream["id"])["frames"] == 1
