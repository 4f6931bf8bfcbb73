"""FHIR across services: batch and transaction Bundles, references and includes at the one base URL.

The whole platform runs as ``make run`` starts it (separate processes, real broker, PostgreSQL).
Types and their owners: Observation (evaluation), Encounter and Procedure (sessions), Device
(device gateway) are writable; CarePlan, Goal and ServiceRequest (plan) are read-only over FHIR.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from relearn.devtools.apps import wait_for
from relearn.devtools.journey.evaluations import evaluation_body
from relearn.devtools.platform import Platform
from relearn.shared.fhir import CANONICAL_URL


@pytest.fixture(scope="module")
def fhir(running_platform: Platform) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {running_platform.token()}", "Content-Type": "application/fhir+json"}
    with httpx.Client(
        base_url=running_platform.settings.fhir_base_url, headers=headers, timeout=60
    ) as client:
        yield client


def _patient() -> str:
    return f"bundle-{uuid.uuid4().hex[:10]}"


def _observation(patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "89423-8"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": 12.40, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"},
        **extra,
    }


def _encounter(patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def _procedure(patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "status": "completed",
        "code": {"text": "sit-to-stand"},
        "subject": {"reference": f"Patient/{patient}"},
        **extra,
    }


def _device(patient: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "status": "active",
        "identifier": [{"system": "urn:relearn:test-device", "value": uuid.uuid4().hex}],
        "patient": {"reference": f"Patient/{patient}"},
        **extra,
    }


def _post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _count(fhir: httpx.Client, rtype: str, patient: str) -> int:
    param = "patient" if rtype == "Device" else "subject"
    resp = fhir.get(f"/{rtype}", params={param: f"Patient/{patient}", "_summary": "count"})
    assert resp.status_code == 200, resp.text
    return int(resp.json()["total"])


def test_a_batch_spans_services_and_answers_in_order(fhir: httpx.Client) -> None:
    patient = _patient()
    bad_device = _device(patient, status="switched-on")  # not a FHIRDeviceStatus code
    batch = _bundle(
        "batch",
        _post(_observation(patient)),
        _post(_device(patient)),
        _post(_encounter(patient)),
        _post(bad_device),
        _post(_procedure(patient)),
        {"request": {"method": "GET", "url": f"CarePlan?subject=Patient/{patient}"}},
        _post(
            {
                "resourceType": "Goal",
                "lifecycleStatus": "active",
                "description": {"text": "walk"},
                "subject": {"reference": f"Patient/{patient}"},
            }
        ),
        {"request": {"method": "GET", "url": "Medication/1"}},
    )
    resp = fhir.post("", json=batch)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == [
        "201 Created",
        "201 Created",
        "201 Created",
        "400 Bad Request",
        "201 Created",
        "200 OK",
        "405 Method Not Allowed",
        "404 Not Found",
    ]
    # Errors point into the request's Bundle, not the sub-Bundle a service was sent.
    device_issue = out["entry"][3]["response"]["outcome"]["issue"][0]
    assert device_issue["expression"] == ["Bundle.entry[3].resource.status"]
    assert device_issue["diagnostics"].startswith("Bundle.entry[3] (POST Device)")
    assert "read-only" in out["entry"][6]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert out["entry"][7]["response"]["outcome"]["issue"][0]["code"] == "not-supported"
    assert out["entry"][5]["resource"]["type"] == "searchset"
    # Every created resource is readable at the one base URL, where its location says.
    for entry in (out["entry"][i] for i in (0, 1, 2, 4)):
        location = entry["response"]["location"]
        assert entry["response"]["etag"] == 'W/"1"'
        read = fhir.get("/" + location.split("/_history")[0])
        assert read.status_code == 200 and read.json()["id"] == entry["resource"]["id"]
    assert _count(fhir, "Device", patient) == 1


def test_a_transaction_within_one_service_is_atomic(fhir: httpx.Client) -> None:
    patient = _patient()
    enc_urn = f"urn:uuid:{uuid.uuid4()}"
    good = _bundle(
        "transaction",
        _post(_encounter(patient), enc_urn),
        _post(_procedure(patient, encounter={"reference": enc_urn})),
        {
            "request": {
                "method": "GET",
                "url": f"Procedure?subject=Patient/{patient}&_include=Procedure:encounter",
            }
        },
    )
    resp = fhir.post("", json=good)
    assert resp.status_code == 200, resp.text
    encounter, procedure, search = resp.json()["entry"]
    assert resp.json()["type"] == "transaction-response"
    assert procedure["resource"]["encounter"] == {"reference": f"Encounter/{encounter['resource']['id']}"}
    found = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in search["resource"]["entry"]}
    assert found == {("Procedure", "match"), ("Encounter", "include")}

    bad_procedure = _procedure(patient)
    del bad_procedure["status"]
    bad = _bundle(
        "transaction",
        _post(_encounter(patient)),
        _post(_procedure(patient)),
        _post(bad_procedure),
    )
    refused = fhir.post("", json=bad)
    assert refused.status_code == 400
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2].resource.status"]
    # Nothing of the failed transaction was stored.
    assert _count(fhir, "Encounter", patient) == 1
    assert _count(fhir, "Procedure", patient) == 1


def test_a_transaction_across_services_is_refused_clearly(fhir: httpx.Client) -> None:
    patient = _patient()
    spanning = _bundle("transaction", _post(_observation(patient)), _post(_device(patient)))
    resp = fhir.post("", json=spanning)
    assert resp.status_code == 400
    issue = resp.json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert "evaluation" in issue["diagnostics"] and "device-gateway" in issue["diagnostics"]
    assert "batch" in issue["diagnostics"]
    assert issue["expression"] == ["Bundle.entry[1].request.url"]
    assert _count(fhir, "Observation", patient) == 0 and _count(fhir, "Device", patient) == 0


def test_references_between_services_resolve_at_the_base_url(fhir: httpx.Client) -> None:
    patient = _patient()
    device = fhir.post("/Device", json=_device(patient)).json()
    encounter = fhir.post("/Encounter", json=_encounter(patient)).json()
    obs = _observation(
        patient,
        device={"reference": f"Device/{device['id']}"},
        encounter={"reference": f"Encounter/{encounter['id']}"},
    )
    created = fhir.post("/Observation", json=obs).json()
    read = fhir.get(f"/Observation/{created['id']}").json()
    for ref in (read["device"]["reference"], read["encounter"]["reference"]):
        target = fhir.get(f"/{ref}")
        assert target.status_code == 200 and f"{target.json()['resourceType']}/{target.json()['id']}" == ref
    by_device = fhir.get("/Observation", params={"device": f"Device/{device['id']}"}).json()
    assert [e["resource"]["id"] for e in by_device["entry"]] == [created["id"]]


def test_includes_across_services(running_platform: Platform, fhir: httpx.Client) -> None:
    patient = _patient()
    evaluation = httpx.post(
        f"{running_platform.urls()['evaluation']}/evaluations",
        json=evaluation_body(patient, "initial", datetime.now(UTC)),
        headers={"Authorization": fhir.headers["Authorization"]},
    )
    assert evaluation.status_code == 201, evaluation.text
    plans = wait_for(
        lambda: fhir.get("/CarePlan", params={"subject": f"Patient/{patient}"}).json().get("entry"),
        what="a CarePlan drafted from the evaluation",
    )
    care_plan = plans[0]["resource"]["id"]
    encounter = fhir.post("/Encounter", json=_encounter(patient)).json()
    procedure = _procedure(
        patient,
        encounter={"reference": f"Encounter/{encounter['id']}"},
        basedOn=[{"reference": f"CarePlan/{care_plan}"}, {"reference": "CarePlan/not-there"}],
    )
    assert fhir.post("/Procedure", json=procedure).status_code == 201

    # _include of a type another service owns: the front door reads it from its owner.
    for include in ("Procedure:based-on", "Procedure:based-on:CarePlan"):
        bundle = fhir.get(
            "/Procedure",
            params=[
                ("subject", f"Patient/{patient}"),
                ("_include", include),
                ("_include", "Procedure:encounter"),
            ],
        ).json()
        modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
        assert modes == {("Procedure", "match"), ("Encounter", "include"), ("CarePlan", "include")}, include
        included = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"]
        assert [e["fullUrl"] for e in included] == [
            f"{running_platform.settings.fhir_base_url}/CarePlan/{care_plan}"
        ]

    # What the caller may not read is left out, as it is within one service.
    no_plans = {
        "Authorization": f"Bearer {running_platform.token('system/Procedure.read system/Encounter.read')}"
    }
    bundle = httpx.get(
        f"{running_platform.settings.fhir_base_url}/Procedure",
        params={"subject": f"Patient/{patient}", "_include": "Procedure:based-on"},
        headers=no_plans,
    ).json()
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Procedure"]

    # _revinclude of a type another service owns is refused, naming both services.
    rev = fhir.get(
        "/Encounter", params={"subject": f"Patient/{patient}", "_revinclude": "Observation:encounter"}
    )
    assert rev.status_code == 400
    issue = rev.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["_revinclude"]
    assert "evaluation" in issue["diagnostics"] and "sessions" in issue["diagnostics"]
    same = fhir.get(
        "/Encounter", params={"subject": f"Patient/{patient}", "_revinclude": "Procedure:encounter"}
    )
    assert {e["resource"]["resourceType"] for e in same.json()["entry"]} == {"Encounter", "Procedure"}


def test_the_capability_statement_lists_batch_and_transaction(running_platform: Platform) -> None:
    statement = httpx.get(f"{running_platform.settings.fhir_base_url}/metadata").json()
    rest = statement["rest"][0]
    system = {i["code"]: i["documentation"] for i in rest["interaction"]}
    assert set(system) == {"batch", "transaction"}
    assert "refused" in system["transaction"] and "one service" in system["transaction"]
    types = [r["type"] for r in rest["resource"]]
    assert len(types) == len(set(types)), "each type described once"
    by_type = {r["type"]: r for r in rest["resource"]}
    assert {i["code"] for i in by_type["CarePlan"]["interaction"]} == {
        "read", "vread", "search-type", "history-instance", "history-type"
    }  # fmt: skip


def test_bundles_need_a_token_and_respect_scopes(running_platform: Platform, fhir: httpx.Client) -> None:
    base = running_platform.settings.fhir_base_url
    patient = _patient()
    batch = _bundle("batch", _post(_observation(patient)), _post(_encounter(patient)))
    assert httpx.post(base, json=batch).status_code == 401
    reader = {"Authorization": f"Bearer {running_platform.token('system/*.read system/Encounter.write')}"}
    out = httpx.post(base, json=batch, headers=reader).json()
    assert [e["response"]["status"] for e in out["entry"]] == ["403 Forbidden", "201 Created"]
    assert _count(fhir, "Observation", patient) == 0


def test_code_systems_of_every_service_are_found_at_the_base_url(fhir: httpx.Client) -> None:
    # evaluation and plan each publish their own CodeSystems under the same type.
    for cs in ("neuromuscular-evaluation", "competence-stage"):
        read = fhir.get(f"/CodeSystem/{cs}")
        assert read.status_code == 200 and read.json()["id"] == cs
        found = fhir.get("/CodeSystem", params={"url": f"{CANONICAL_URL}/CodeSystem/{cs}"}).json()
        assert found["total"] == 1 and found["entry"][0]["resource"]["id"] == cs
    assert fhir.get("/CodeSystem/not-a-code-system").status_code == 404
    first = fhir.get("/CodeSystem", params={"_count": "2"}).json()
    ids: list[str] = []
    page: dict[str, Any] | None = first
    while page is not None:
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        page = fhir.get(nxt).json() if nxt else None
    assert len(ids) == len(set(ids)) == first["total"]
    assert {"neuromuscular-evaluation", "competence-stage", "progression-dimension"} <= set(ids)


def test_a_batch_across_services_is_authorised_entry_by_entry_with_v2_and_filtered_scopes(
    running_platform: Platform, fhir: httpx.Client
) -> None:
    """Through the front door, with a token the development issuer grants over HTTP: each entry checks its
    own letter and filter in its own service."""
    base = running_platform.settings.fhir_base_url
    patient = _patient()
    category = "http://terminology.hl7.org/CodeSystem/observation-category"

    def observation(code: str) -> dict[str, Any]:
        return _observation(patient, category=[{"coding": [{"system": category, "code": code}]}])

    vital = fhir.post("/Observation", json=observation("vital-signs")).json()["id"]
    lab = fhir.post("/Observation", json=observation("laboratory")).json()["id"]
    finished = fhir.post("/Encounter", json=_encounter(patient)).json()["id"]
    planned = fhir.post("/Encounter", json=_encounter(patient, status="planned")).json()["id"]
    scope = "system/Observation.rs?category=vital-signs system/Encounter.c system/Encounter.r?status=finished"
    token = running_platform.token(scope)
    batch = _bundle(
        "batch",
        _post(_encounter(patient)),  # Encounter c: allowed
        _post(observation("vital-signs")),  # no Observation c
        {"request": {"method": "GET", "url": f"Observation?subject=Patient/{patient}"}},
        {"request": {"method": "GET", "url": f"Observation/{vital}"}},
        {"request": {"method": "GET", "url": f"Observation/{lab}"}},  # outside the filter
        {"request": {"method": "GET", "url": f"Encounter/{finished}"}},
        {"request": {"method": "GET", "url": f"Encounter/{planned}"}},  # outside the filter
        {"request": {"method": "GET", "url": f"Encounter?subject=Patient/{patient}"}},  # no Encounter s
    )
    out = httpx.post(base, json=batch, headers={"Authorization": f"Bearer {token}"}).json()
    statuses = [e["response"]["status"][:3] for e in out["entry"]]
    assert statuses == ["201", "403", "200", "200", "404", "200", "404", "403"]
    found = {e["resource"]["id"] for e in out["entry"][2]["resource"].get("entry", [])}
    assert found == {vital}
    assert _count(fhir, "Observation", patient) == 2
