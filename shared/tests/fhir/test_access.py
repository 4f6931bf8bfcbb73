"""SMART scopes on every route; patient-scoped tokens see and write only their patient's compartment."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


@pytest.fixture(scope="module")
def two_patients(api: Api) -> dict[str, str]:
    """Patient "a" (the pat-a tokens' patient) and patient "b", one Observation each, plus a panel of a's."""
    for pid in ("a", "b"):
        r = api.call("PUT", f"/fhir/Patient/{pid}", body={"resourceType": "Patient", "id": pid})
        assert r.status_code in (200, 201)
    ids = {pid: api.create(api.observation(pid))["id"] for pid in ("a", "b")}
    panel = api.observation("a", value=None)
    panel["hasMember"] = [{"reference": f"Observation/{ids['a']}"}, {"reference": f"Observation/{ids['b']}"}]
    ids["panel"] = api.create(panel)["id"]
    return ids


def test_a_patient_token_searches_only_its_compartment(api: Api, two_patients: dict[str, str]) -> None:
    mine = set(api.search_ids("Observation", {}, token="pat-a"))
    assert {two_patients["a"], two_patients["panel"]} <= mine
    assert two_patients["b"] not in mine
    everyone = set(api.search_ids("Observation", {}, token="system"))
    assert two_patients["b"] in everyone
    # Asking for the other patient explicitly still returns nothing of theirs.
    assert api.search_ids("Observation", {"patient": "b"}, token="pat-a") == []
    assert api.search("Observation", {"_summary": "count", "patient": "b"}, token="pat-a")["total"] == 0


def test_a_patient_token_gets_404_for_another_patients_resources(
    api: Api, two_patients: dict[str, str]
) -> None:
    assert api.get(f"/fhir/Observation/{two_patients['a']}", token="pat-a").status_code == 200
    for path in (
        f"/fhir/Observation/{two_patients['b']}",
        f"/fhir/Observation/{two_patients['b']}/_history/1",
        f"/fhir/Observation/{two_patients['b']}/_history",
        "/fhir/Patient/b",
    ):
        r = api.get(path, token="pat-a")
        assert r.status_code == 404, path
        assert api.json(r)["issue"][0]["code"] == "not-found"
    assert api.get("/fhir/Patient/a", token="pat-a").status_code == 200


def test_includes_do_not_leak_another_patient(api: Api, two_patients: dict[str, str]) -> None:
    bundle = api.search(
        "Observation", {"_id": two_patients["panel"], "_include": "Observation:has-member"}, token="pat-a"
    )
    ids = {e["resource"]["id"] for e in bundle["entry"]}
    assert ids == {two_patients["panel"], two_patients["a"]}


def test_type_history_is_confined_too(api: Api, two_patients: dict[str, str]) -> None:
    history = api.json(api.get("/fhir/Observation/_history", token="pat-a", params={"_count": "1000"}))
    ids = {e["resource"]["id"] for e in history.get("entry", [])}
    assert two_patients["a"] in ids and two_patients["b"] not in ids


def test_patient_writes_are_confined(api: Api, two_patients: dict[str, str]) -> None:
    created = api.call("POST", "/fhir/Observation", body=api.observation("a"), token="pat-a-rw")
    assert created.status_code == 201
    other = api.call("POST", "/fhir/Observation", body=api.observation("b"), token="pat-a-rw")
    assert other.status_code == 403
    theirs = api.json(api.get(f"/fhir/Observation/{two_patients['b']}"))
    assert (
        api.call("PUT", f"/fhir/Observation/{theirs['id']}", body=theirs, token="pat-a-rw").status_code == 403
    )
    assert api.call("DELETE", f"/fhir/Observation/{theirs['id']}", token="pat-a-rw").status_code == 403
    # Moving one's own observation to another patient is a write for that patient.
    own = api.json(created)
    moved = {**own, "subject": {"reference": "Patient/b"}}
    assert api.call("PUT", f"/fhir/Observation/{own['id']}", body=moved, token="pat-a-rw").status_code == 403
    assert api.get(f"/fhir/Observation/{theirs['id']}").status_code == 200  # untouched


def test_scopes_are_checked_per_type_and_access(api: Api, two_patients: dict[str, str]) -> None:
    obs = api.observation("a")
    assert api.call("POST", "/fhir/Observation", body=obs, token="reader").status_code == 403
    assert api.call("POST", "/fhir/Observation", body=obs, token="pat-a").status_code == 403  # read-only
    assert api.get("/fhir/Patient/a", token="obs-only").status_code == 403
    assert api.get(f"/fhir/Observation/{two_patients['a']}", token="obs-only").status_code == 200
    # Patients are not included for a token that may not read them.
    bundle = api.search(
        "Observation", {"_id": two_patients["a"], "_include": "Observation:patient"}, token="obs-only"
    )
    assert [e["search"]["mode"] for e in bundle["entry"]] == ["match"]


def test_a_token_is_required(api: Api) -> None:
    r = api.get("/fhir/Observation", token=None)
    assert r.status_code == 401
    assert api.json(r)["issue"][0]["code"] == "login"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert api.get("/fhir/Observation", token="not-a-known-token").status_code == 401


def test_a_deleted_resource_of_another_patient_cannot_be_taken_over(api: Api) -> None:
    """The compartment of a deleted id is that of its last content: no PUT over it, no history leak."""
    theirs = api.create(api.observation("b"))
    secret = {**theirs, "note": [{"text": "b's private note"}]}
    assert api.call("PUT", f"/fhir/Observation/{theirs['id']}", body=secret).status_code == 200
    assert api.call("DELETE", f"/fhir/Observation/{theirs['id']}").status_code == 204

    takeover = {**api.observation("a"), "id": theirs["id"]}
    resp = api.call("PUT", f"/fhir/Observation/{theirs['id']}", body=takeover, token="pat-a-rw")
    assert resp.status_code == 403
    # Conditional update naming the deleted id in the body (no match) is the same write.
    resp = api.call("PUT", "/fhir/Observation", body=takeover, token="pat-a-rw", params={"_id": theirs["id"]})
    assert resp.status_code == 403
    # Nothing was written: still deleted, and a's tokens see none of its versions.
    assert api.get(f"/fhir/Observation/{theirs['id']}").status_code == 410
    assert api.get(f"/fhir/Observation/{theirs['id']}/_history", token="pat-a").status_code == 404
    history = api.json(api.get("/fhir/Observation/_history", token="pat-a", params={"_count": "1000"}))
    assert theirs["id"] not in {e.get("resource", {}).get("id") for e in history.get("entry", [])}
    assert "b's private note" not in api.get("/fhir/Observation/_history", token="pat-a").text


def test_history_shows_only_the_versions_in_the_patients_compartment(api: Api) -> None:
    """A resource moved from b to a: a sees its own versions, not b's earlier ones (as vread does)."""
    moved = api.create({**api.observation("b"), "note": [{"text": "b's version"}]})
    now_a = {**moved, "subject": {"reference": "Patient/a"}, "note": [{"text": "a's version"}]}
    assert api.call("PUT", f"/fhir/Observation/{moved['id']}", body=now_a).status_code == 200

    instance = api.json(api.get(f"/fhir/Observation/{moved['id']}/_history", token="pat-a"))
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["2"]
    assert instance["total"] == 1
    typed = api.get("/fhir/Observation/_history", token="pat-a", params={"_count": "1000"})
    assert "a's version" in typed.text and "b's version" not in typed.text
    assert api.get(f"/fhir/Observation/{moved['id']}/_history/1", token="pat-a").status_code == 404
    # The system token still sees both.
    everything = api.json(api.get(f"/fhir/Observation/{moved['id']}/_history"))
    assert len(everything["entry"]) == 2
