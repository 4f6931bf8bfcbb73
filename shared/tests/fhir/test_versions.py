"""Versions, history, conditional writes and deletes: on PostgreSQL and on the SQLite default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


def _update(api: Api, resource: dict[str, Any], **kw: Any) -> Any:
    return api.call("PUT", f"/fhir/Observation/{resource['id']}", body=resource, **kw)


def test_update_makes_a_new_version_and_vread_keeps_the_old(any_api: Api) -> None:
    api = any_api
    v1 = api.create(api.observation(api.new_patient(), status="preliminary"))
    changed = {**v1, "status": "final"}
    r = _update(api, changed)
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"2"'
    assert "location" not in r.headers
    v2 = api.json(r)
    assert v2["meta"]["versionId"] == "2" and v2["status"] == "final"
    assert v2["meta"]["lastUpdated"] > v1["meta"]["lastUpdated"]

    assert api.json(api.get(f"/fhir/Observation/{v1['id']}"))["status"] == "final"
    old = api.get(f"/fhir/Observation/{v1['id']}/_history/1")
    assert old.status_code == 200 and old.headers["etag"] == 'W/"1"'
    assert api.json(old)["status"] == "preliminary"
    assert api.get(f"/fhir/Observation/{v1['id']}/_history/3").status_code == 404

    history = api.json(api.get(f"/fhir/Observation/{v1['id']}/_history"))
    assert history["type"] == "history" and history["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "POST"]


def test_if_match_guards_updates(any_api: Api) -> None:
    api = any_api
    obs = api.create(api.observation(api.new_patient()))
    stale = _update(api, {**obs, "status": "amended"}, headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert api.json(stale)["resourceType"] == "OperationOutcome"
    ok = _update(api, {**obs, "status": "amended"}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'
    again = _update(api, {**obs, "status": "corrected"}, headers={"If-Match": 'W/"1"'})
    assert again.status_code == 412
    assert api.json(api.get(f"/fhir/Observation/{obs['id']}"))["status"] == "amended"


def test_update_rules_for_ids(any_api: Api) -> None:
    api = any_api
    obs = api.create(api.observation(api.new_patient()))
    other = api.call("PUT", f"/fhir/Observation/{obs['id']}", body={**obs, "id": "somebody-else"})
    assert other.status_code == 400
    assert api.json(other)["issue"][0]["expression"] == ["Observation.id"]
    no_id = {k: v for k, v in obs.items() if k != "id"}
    assert api.call("PUT", f"/fhir/Observation/{obs['id']}", body=no_id).status_code == 400
    bad = api.call("PUT", "/fhir/Observation/bad_id!", body={**obs, "id": "bad_id!"})
    assert bad.status_code == 400


def test_update_as_create_with_a_client_id(any_api: Api) -> None:
    api = any_api
    rid = f"client-{api.new_patient()}"
    r = api.call("PUT", f"/fhir/Observation/{rid}", body={**api.observation(api.new_patient()), "id": rid})
    assert r.status_code == 201
    assert r.headers["location"] == f"{api.base}/Observation/{rid}/_history/1"
    assert api.get(f"/fhir/Observation/{rid}").status_code == 200


def test_delete_is_410_and_history_keeps_it(any_api: Api) -> None:
    api = any_api
    obs = api.create(api.observation(api.new_patient()))
    path = f"/fhir/Observation/{obs['id']}"
    deleted = api.call("DELETE", path)
    assert deleted.status_code == 204
    assert deleted.headers["etag"] == 'W/"2"'
    gone = api.get(path)
    assert gone.status_code == 410
    assert api.json(gone)["issue"][0]["code"] == "deleted"
    assert api.get(f"{path}/_history/1").status_code == 200
    assert api.get(f"{path}/_history/2").status_code == 410
    history = api.json(api.get(f"{path}/_history"))
    assert history["total"] == 2
    first = history["entry"][0]
    assert "resource" not in first and first["request"] == {
        "method": "DELETE",
        "url": f"Observation/{obs['id']}",
    }
    assert api.call("DELETE", path).status_code == 204  # deleting again changes nothing
    assert api.json(api.get(f"{path}/_history"))["total"] == 2
    assert api.call("DELETE", "/fhir/Observation/never-was").status_code == 404
    # A deleted resource is no longer found by search.
    assert obs["id"] not in api.search_ids("Observation", {"_id": obs["id"]})
    # ...and may be brought back by an update, continuing the version sequence.
    back = api.call("PUT", path, body=obs)
    assert back.status_code == 201 and back.headers["etag"] == 'W/"3"'


def test_conditional_create(any_api: Api) -> None:
    api = any_api
    ident = {"system": "urn:test:ids", "value": api.new_patient()}
    obs = api.observation(api.new_patient(), identifier=[ident])
    cond = {"If-None-Exist": f"identifier=urn:test:ids|{ident['value']}"}
    first = api.call("POST", "/fhir/Observation", body=obs, headers=cond)
    assert first.status_code == 201
    second = api.call("POST", "/fhir/Observation", body=obs, headers=cond)
    assert second.status_code == 200
    assert api.json(second)["id"] == api.json(first)["id"]
    assert api.search("Observation", {"identifier": f"urn:test:ids|{ident['value']}"})["total"] == 1
    # Two matches: the server cannot tell which one is meant.
    api.call("POST", "/fhir/Observation", body=obs)
    third = api.call("POST", "/fhir/Observation", body=obs, headers=cond)
    assert third.status_code == 412
    unknown = api.call("POST", "/fhir/Observation", body=obs, headers={"If-None-Exist": "nonsense=1"})
    assert unknown.status_code == 400


def test_conditional_update_and_delete(any_api: Api) -> None:
    api = any_api
    value = api.new_patient()
    obs = api.observation(api.new_patient(), identifier=[{"system": "urn:test:ids", "value": value}])
    query = {"identifier": f"urn:test:ids|{value}"}
    created = api.call("PUT", "/fhir/Observation", params=query, body=obs)
    assert created.status_code == 201
    rid = api.json(created)["id"]
    updated = api.call("PUT", "/fhir/Observation", params=query, body={**obs, "status": "amended"})
    assert updated.status_code == 200
    assert api.json(updated)["id"] == rid and api.json(updated)["meta"]["versionId"] == "2"
    assert api.call("DELETE", "/fhir/Observation", params=query).status_code == 204
    assert api.get(f"/fhir/Observation/{rid}").status_code == 410
    assert api.call("DELETE", "/fhir/Observation").status_code == 400  # never "delete everything"


def test_prefer_return(any_api: Api) -> None:
    api = any_api
    obs = api.observation(api.new_patient())
    minimal = api.call("POST", "/fhir/Observation", body=obs, headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"].startswith(f"{api.base}/Observation/")
    outcome = api.call("POST", "/fhir/Observation", body=obs, headers={"Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert api.json(outcome)["resourceType"] == "OperationOutcome"


def test_read_headers_and_conditional_read(any_api: Api) -> None:
    api = any_api
    obs = api.create(api.observation(api.new_patient()))
    r = api.get(f"/fhir/Observation/{obs['id']}")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["last-modified"].endswith("GMT")
    same = api.get(f"/fhir/Observation/{obs['id']}", headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304
    assert api.get("/fhir/Observation/unknown-id").status_code == 404


def test_type_history_pages_newest_first(any_api: Api) -> None:
    api = any_api
    made = [api.create(api.observation(api.new_patient()))["id"] for _ in range(3)]
    page = api.json(api.get("/fhir/Observation/_history", params={"_count": "2"}))
    assert page["type"] == "history" and len(page["entry"]) == 2
    assert [e["resource"]["id"] for e in page["entry"]] == made[::-1][:2]
    assert any(link["relation"] == "next" for link in page["link"])
    since = api.json(
        api.get("/fhir/Observation/_history", params={"_since": page["entry"][1]["response"]["lastModified"]})
    )
    assert [e["resource"]["id"] for e in since["entry"]] == made[::-1][:2]
