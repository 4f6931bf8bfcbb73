"""Scope letters and v2 scope filters in the FHIR store, on PostgreSQL and on the embedded SQLite default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _categorised(api: Api, patient: str, category: str) -> dict[str, Any]:
    return api.observation(patient, category=[{"coding": [{"system": CATEGORY, "code": category}]}])


def test_a_filtered_scope_sees_and_writes_only_its_category(any_api: Api) -> None:
    api = any_api
    vital = api.create(_categorised(api, "a", "vital-signs"))["id"]
    lab = api.create(_categorised(api, "a", "laboratory"))["id"]
    other = api.create(_categorised(api, "b", "vital-signs"))["id"]

    ids = set(api.search_ids("Observation", {"_count": "1000"}, token="vitals-a"))
    assert vital in ids and lab not in ids and other not in ids
    assert api.search_ids("Observation", {"category": "laboratory"}, token="vitals-a") == []
    assert api.get(f"/fhir/Observation/{vital}", token="vitals-a").status_code == 200
    assert api.get(f"/fhir/Observation/{lab}", token="vitals-a").status_code == 404
    assert api.get(f"/fhir/Observation/{lab}/_history/1", token="vitals-a").status_code == 404
    history = api.json(api.get("/fhir/Observation/_history", token="vitals-a", params={"_count": "1000"}))
    assert lab not in {e["resource"]["id"] for e in history.get("entry", [])}

    assert (
        api.call(
            "POST", "/fhir/Observation", body=_categorised(api, "a", "laboratory"), token="vitals-a"
        ).status_code
        == 403
    )
    assert api.call("DELETE", f"/fhir/Observation/{lab}", token="vitals-a").status_code == 403
    turned = {**_categorised(api, "a", "laboratory"), "id": vital}
    assert api.call("PUT", f"/fhir/Observation/{vital}", body=turned, token="vitals-a").status_code == 403
    assert api.call("DELETE", f"/fhir/Observation/{vital}", token="vitals-a").status_code == 204


def test_search_and_read_are_separate_letters(any_api: Api) -> None:
    api = any_api
    obs = api.create(api.observation("a"))["id"]
    assert api.get("/fhir/Observation", token="obs-s", params={"_id": obs}).status_code == 200
    assert api.get("/fhir/Observation/_history", token="obs-s").status_code == 200
    for path in (
        f"/fhir/Observation/{obs}",
        f"/fhir/Observation/{obs}/_history/1",
        f"/fhir/Observation/{obs}/_history",
    ):
        assert api.get(path, token="obs-s").status_code == 403
        assert api.get(path, token="obs-r").status_code == 200
    assert api.get("/fhir/Observation", token="obs-r", params={"_id": obs}).status_code == 403
    assert api.get("/fhir/Observation/_history", token="obs-r").status_code == 403
