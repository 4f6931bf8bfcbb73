"""batch and transaction Bundles at the base URL: on PostgreSQL and on the SQLite default."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


def _post(api: Api, bundle: dict[str, Any], token: str | None = "system", **kw: Any) -> Any:
    return api.call("POST", "/fhir", body=bundle, token=token, **kw)


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _create(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    entry["request"].update(request)
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _patient_obs(api: Api, patient: str) -> list[dict[str, Any]]:
    bundle = api.search("Observation", {"subject": f"Patient/{patient}"})
    return [e["resource"] for e in bundle.get("entry", [])]


def test_batch_answers_every_entry_in_order(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    existing = api.create(api.observation(patient))
    bad = api.observation(patient)
    del bad["status"]
    r = _post(
        api,
        _bundle(
            "batch",
            _create(api.observation(patient, code="1-1")),
            {"request": {"method": "GET", "url": f"Observation/{existing['id']}"}},
            {"request": {"method": "GET", "url": "Observation/does-not-exist"}},
            _create(bad),
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{patient}&_count=10"}},
            {"request": {"method": "PATCH", "url": f"Observation/{existing['id']}"}},
        ),
    )
    assert r.status_code == 200, r.text
    out = api.json(r)
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == [
        "201 Created",
        "200 OK",
        "404 Not Found",
        "400 Bad Request",
        "200 OK",
        "405 Method Not Allowed",
    ]
    created = out["entry"][0]
    assert created["response"]["location"] == f"Observation/{created['resource']['id']}/_history/1"
    assert created["response"]["etag"] == 'W/"1"'
    assert created["fullUrl"] == f"{api.base}/Observation/{created['resource']['id']}"
    assert out["entry"][1]["resource"]["id"] == existing["id"]
    issue = out["entry"][3]["response"]["outcome"]["issue"][0]
    assert issue["expression"] == ["Bundle.entry[3].resource.status"]
    assert issue["diagnostics"].startswith("Bundle.entry[3] (POST Observation)")
    # The search ran after the create: each batch entry is its own committed transaction.
    assert out["entry"][4]["resource"]["total"] == 2
    assert len(_patient_obs(api, patient)) == 2


def test_transaction_links_entries_by_full_url(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    panel_urn, member_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    panel = api.observation(patient, code="panel", hasMember=[{"reference": member_urn}])
    r = _post(
        api,
        _bundle(
            "transaction",
            # Listed first, runs last (GET after POST): it sees the transaction's writes.
            {"request": {"method": "GET", "url": f"Observation?subject=Patient/{patient}"}},
            _create(panel, panel_urn),
            _create(api.observation(patient, code="member"), member_urn),
        ),
    )
    assert r.status_code == 200, r.text
    out = api.json(r)
    assert out["type"] == "transaction-response"
    search, panel_out, member_out = out["entry"]
    assert search["resource"]["total"] == 2
    member_id = member_out["resource"]["id"]
    assert panel_out["resource"]["hasMember"] == [{"reference": f"Observation/{member_id}"}]
    found = api.search(
        "Observation", {"_id": panel_out["resource"]["id"], "_include": "Observation:has-member"}
    )
    assert {e["resource"]["id"] for e in found["entry"]} == {panel_out["resource"]["id"], member_id}


def test_a_failing_entry_fails_the_whole_transaction(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    keep = api.create(api.observation(patient))
    bad = api.observation(patient)
    bad["status"] = "not-a-status"
    r = _post(
        api,
        _bundle(
            "transaction",
            _create(api.observation(patient, code="a")),
            {"request": {"method": "DELETE", "url": f"Observation/{keep['id']}"}},
            _create(bad),
        ),
    )
    assert r.status_code == 400
    outcome = api.json(r)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"][0].startswith("Bundle.entry[2].resource.status")
    # Nothing stored, nothing deleted.
    assert [o["id"] for o in _patient_obs(api, patient)] == [keep["id"]]


def test_transaction_conditional_create_and_if_match(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    ident = {"system": "https://lab.example/ids", "value": uuid.uuid4().hex}
    existing = api.create(api.observation(patient, identifier=[ident]))
    urn = f"urn:uuid:{uuid.uuid4()}"
    condition = f"identifier={ident['system']}|{ident['value']}"
    r = _post(
        api,
        _bundle(
            "transaction",
            _create(api.observation(patient, identifier=[ident]), urn, ifNoneExist=condition),
            _create(api.observation(patient, code="derived", derivedFrom=[{"reference": urn}])),
        ),
    )
    assert r.status_code == 200, r.text
    first, second = api.json(r)["entry"]
    assert first["response"]["status"] == "200 OK"
    assert first["resource"]["id"] == existing["id"]
    assert second["resource"]["derivedFrom"] == [{"reference": f"Observation/{existing['id']}"}]
    assert len(_patient_obs(api, patient)) == 2

    stale = {**existing, "status": "amended"}
    update = {"resource": stale, "request": {"method": "PUT", "url": f"Observation/{existing['id']}"}}
    ok = _post(api, _bundle("transaction", {**update, "request": {**update["request"], "ifMatch": 'W/"1"'}}))
    assert ok.status_code == 200, ok.text
    assert api.json(ok)["entry"][0]["response"]["etag"] == 'W/"2"'
    again = _post(
        api, _bundle("transaction", {**update, "request": {**update["request"], "ifMatch": 'W/"1"'}})
    )
    assert again.status_code == 412
    assert api.json(again)["issue"][0]["expression"] == ["Bundle.entry[0].request.ifMatch"]


def test_unresolved_urn_and_twice_written_resources_are_refused(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    dangling = api.observation(patient, hasMember=[{"reference": f"urn:uuid:{uuid.uuid4()}"}])
    r = _post(api, _bundle("transaction", _create(dangling)))
    assert r.status_code == 400
    assert api.json(r)["issue"][0]["expression"] == ["Bundle.entry[0].resource.hasMember[0].reference"]

    in_batch = _post(api, _bundle("batch", _create(dangling)))
    entry = api.json(in_batch)["entry"][0]
    assert entry["response"]["status"] == "400 Bad Request"
    assert "transaction" in entry["response"]["outcome"]["issue"][0]["diagnostics"]

    existing = api.create(api.observation(patient))
    twice = {"resource": existing, "request": {"method": "PUT", "url": f"Observation/{existing['id']}"}}
    r = _post(api, _bundle("transaction", twice, twice))
    assert r.status_code == 400 and "only once" in r.text
    assert not [o for o in _patient_obs(api, patient) if o["meta"]["versionId"] != "1"]


def test_the_bundle_itself_is_validated_with_field_paths(any_api: Api) -> None:
    api = any_api
    r = _post(api, {"resourceType": "Bundle", "type": "collection"})
    assert r.status_code == 400 and api.json(r)["issue"][0]["expression"] == ["Bundle.type"]
    r = _post(
        api,
        _bundle(
            "batch",
            {"request": {"method": "GET", "url": "Observation"}},
            {"request": {"method": "GET", "url": "Observation"}},
            {"request": {"method": "FETCH", "url": "Observation"}},
            {"request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}},
        ),
    )
    assert r.status_code == 400
    paths = [i["expression"][0] for i in api.json(r)["issue"]]
    assert paths == [
        "Bundle.entry[2].request.method",
        "Bundle.entry[3].resource",
        "Bundle.entry[4].resource.resourceType",
    ]
    r = api.call("POST", "/fhir", body='{"resourceType": "Patient"}')
    assert r.status_code == 400 and api.json(r)["issue"][0]["expression"] == ["Bundle.resourceType"]


def test_scopes_apply_to_every_entry(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    create = _create(api.observation(patient))
    batch = api.json(_post(api, _bundle("batch", create), token="reader"))
    assert batch["entry"][0]["response"]["status"] == "403 Forbidden"
    r = _post(api, _bundle("transaction", create), token="reader")
    assert r.status_code == 403
    assert _patient_obs(api, patient) == []
    # A patient token writes only in its own compartment.
    own = _create(api.observation("a"))
    other = _create(api.observation(patient))
    r = _post(api, _bundle("transaction", own, other), token="pat-a-rw")
    assert r.status_code == 403
    assert _patient_obs(api, patient) == []
    assert _post(api, {"resourceType": "Bundle", "type": "batch"}, token=None).status_code == 401


def test_fhirpy_style_conditional_create_and_if_none_match(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    ident = uuid.uuid4().hex
    obs = api.observation(patient, identifier=[{"system": "urn:x", "value": ident}])
    # fhirpy's conditional create puts the criteria in the query: not FHIR, so refused, saying what to send.
    as_query = api.call("POST", "/fhir/Observation", body=obs, params={"identifier": f"urn:x|{ident}"})
    assert as_query.status_code == 400
    issue = api.json(as_query)["issue"][0]
    assert issue["expression"] == ["If-None-Exist"]
    assert f"If-None-Exist: identifier=urn%3Ax%7C{ident}" in issue["diagnostics"]
    assert _patient_obs(api, patient) == []
    header = {"If-None-Exist": f"identifier=urn:x|{ident}"}
    first = api.call("POST", "/fhir/Observation", body=obs, headers=header)
    assert first.status_code == 201
    second = api.call("POST", "/fhir/Observation", body=obs, headers=header)
    assert second.status_code == 200 and api.json(second)["id"] == api.json(first)["id"]
    assert len(_patient_obs(api, patient)) == 1
    # fhirpy's refresh() sends the bare versionId.
    same = api.get(f"/fhir/Observation/{api.json(first)['id']}", headers={"If-None-Match": "1"})
    assert same.status_code == 304


def test_an_include_reaching_another_services_type_says_so(any_api: Api) -> None:
    api = any_api
    patient = api.new_patient()
    obs = api.create(api.observation(patient, subject={"reference": "Group/cohort-1"}))
    bundle = api.search("Observation", {"_id": obs["id"], "_include": "Observation:subject"})
    outcome = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome")
    issue = outcome["issue"][0]
    assert issue["severity"] == "information" and "Group/cohort-1" in issue["diagnostics"]
    assert issue["extension"][0]["valueReference"] == {"reference": "Group/cohort-1"}
    # A targeted include of a type this service does not hold is accepted the same way.
    targeted = api.search("Observation", {"_id": obs["id"], "_include": "Observation:subject:Group"})
    assert [e["search"]["mode"] for e in targeted["entry"]] == ["match", "outcome"]
