"""Every official R4 Observation and Patient example goes in and comes back with the same meaning,
and with the client's decimal and timestamp text intact."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from relearn.shared.fhir import jsontext

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api

R4 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fhir-examples" / "R4"
OBSERVATIONS = sorted(R4.glob("Observation-*.json"))
PATIENTS = sorted(R4.glob("Patient-*.json"))


def _without_server_fields(resource: dict[str, Any]) -> str:
    """Exact JSON text (decimals as written) minus what the server owns: id, versionId, lastUpdated."""
    out = dict(resource)
    out.pop("id", None)
    meta = {k: v for k, v in (out.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return jsontext.dumps(dict(sorted(out.items())))


def test_the_examples_are_there() -> None:
    assert len(OBSERVATIONS) == 50 and len(PATIENTS) == 21


@pytest.mark.parametrize("path", OBSERVATIONS + PATIENTS, ids=lambda p: p.stem)
def test_example_is_accepted_and_read_back_unchanged(api: Api, path: Path) -> None:
    sent = path.read_bytes()
    rtype = path.stem.split("-")[0]
    created = api.call("POST", f"/fhir/{rtype}", body=sent)
    assert created.status_code == 201, created.text
    new_id = api.json(created)["id"]
    assert created.headers["location"] == f"{api.base}/{rtype}/{new_id}/_history/1"

    read = api.get(f"/fhir/{rtype}/{new_id}")
    assert read.status_code == 200
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.headers["etag"] == 'W/"1"'
    assert read.content == created.content  # the stored text, byte for byte
    got = api.json(read)
    assert got["meta"]["versionId"] == "1"
    assert _without_server_fields(got) == _without_server_fields(jsontext.loads(sent))


def test_decimal_text_survives_byte_for_byte(api: Api) -> None:
    created = api.call("POST", "/fhir/Observation", body=(R4 / "Observation-body-height.json").read_bytes())
    read = api.get(f"/fhir/Observation/{api.json(created)['id']}")
    assert b'"value":66.899999999999991' in read.content

    decimals = api.call("POST", "/fhir/Observation", body=(R4 / "Observation-decimal.json").read_bytes())
    text = api.get(f"/fhir/Observation/{api.json(decimals)['id']}").content
    for literal in (b"1.0,", b"1.00,", b"1E-22", b"1000000000000000000", b"1.000000000000000000E-245"):
        assert literal in text
    assert b"-1.000000000000000000E+245" in text


def test_sampled_data_string_is_kept(api: Api) -> None:
    sent = (R4 / "Observation-ekg.json").read_bytes()
    original = jsontext.loads(sent)["component"][0]["valueSampledData"]
    created = api.call("POST", "/fhir/Observation", body=sent)
    got = api.json(api.get(f"/fhir/Observation/{api.json(created)['id']}"))["component"][0][
        "valueSampledData"
    ]
    assert got["data"] == original["data"]
    assert jsontext.dumps(got) == jsontext.dumps(original)  # factor 1.612, limits, period unchanged


def test_timestamp_text_is_kept(api: Api) -> None:
    obs = api.observation(api.new_patient(), effective=None, effectiveInstant="2020-01-01T10:00:00.715Z")
    obs["issued"] = "2020-01-01T10:00:01.7+01:00"
    created = api.call("POST", "/fhir/Observation", body=obs)
    text = api.get(f"/fhir/Observation/{api.json(created)['id']}").content
    assert b'"effectiveInstant":"2020-01-01T10:00:00.715Z"' in text
    assert b'"issued":"2020-01-01T10:00:01.7+01:00"' in text


def test_server_sets_id_and_meta_but_keeps_other_meta(api: Api) -> None:
    obs = api.observation(api.new_patient())
    obs["id"] = "client-chosen"
    obs["meta"] = {"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z", "profile": ["http://x/p"]}
    got = api.json(api.call("POST", "/fhir/Observation", body=obs))
    assert got["id"] != "client-chosen"
    assert got["meta"]["versionId"] == "1"
    assert got["meta"]["profile"] == ["http://x/p"]
    last = got["meta"]["lastUpdated"]
    assert last.endswith("Z") and len(last) == len("2020-01-01T10:00:00.715Z")  # millisecond precision
