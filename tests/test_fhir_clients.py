"""Real FHIR clients nobody here wrote, against the one base URL of the running platform.

``fhirpy`` (Beda Software) and ``fhirclient`` (SMART on FHIR client-py) do what an EHR
integration does: search with paging, read, conditional create, versioned update (a stale
``If-Match`` is 412), and transaction/batch Bundles. Where a client departs from the spec:

- fhirpy writes with ``Content-Type: application/json`` (accepted: the spec allows it);
- fhirpy's conditional create (``get_or_create``, ``resource.create(**criteria)``) sends the
  criteria as a query string on the POST instead of ``If-None-Exist``: FHIR defines no such thing,
  so it is refused with a 400 OperationOutcome saying which header to send (and nothing stored);
  fhirpy's ``extra_headers`` carries ``If-None-Exist`` the spec's way;
- fhirpy's ``refresh()`` sends ``If-None-Match: <versionId>`` without the ``W/"..."`` (accepted);
- fhirpy maps 412 to ``MultipleResourcesFound`` whatever its cause (the OperationOutcome says
  which precondition failed);
- fhirpy ``patch()`` sends PATCH, which is not supported (405 OperationOutcome);
- client-py has no If-Match / If-None-Exist parameter: an integration sets them on the
  client's ``requests`` session, as done here.

Both get their tokens the production way, SMART Backend Services (a client assertion signed with the
``relearn-backend-dev`` client's private key, tokens of 300 s, so the clients are made per test): fhirpy
from :meth:`Platform.backend`, client-py through its own flow (``jwt_token``: it finds the token endpoint in
the CapabilityStatement's SMART ``oauth-uris`` and posts the assertion itself).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fhirclient import client as smart_client  # type: ignore[import-untyped]
from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest  # type: ignore[import-untyped]
from fhirclient.models.observation import Observation  # type: ignore[import-untyped]
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome

from relearn.devtools.platform import Platform

PAGE = 10
LOINC_TUG = {"system": "http://loinc.org", "code": "89423-8"}


SCOPE = "system/*.read system/*.write"


@pytest.fixture
def token(running_platform: Platform) -> str:
    return running_platform.backend().token(SCOPE)


@pytest.fixture(scope="module")
def base(running_platform: Platform) -> str:
    return running_platform.settings.fhir_base_url


@pytest.fixture
def fhirpy(base: str, token: str) -> SyncFHIRClient:
    return SyncFHIRClient(base, authorization=f"Bearer {token}")


@pytest.fixture
def smart(base: str, running_platform: Platform) -> Iterator[smart_client.FHIRClient]:
    backend = running_platform.backend()
    settings = {
        "app_id": backend.client_id,
        "api_base": base,
        "scope": SCOPE,
        "jwt_token": backend.assertion(),
    }
    smart = smart_client.FHIRClient(settings=settings)
    smart.prepare()  # reads the CapabilityStatement: the token endpoint
    smart.authorize()  # client_credentials with the client assertion
    assert smart.ready
    yield smart
    smart.server.session.close()


def _patient() -> str:
    return f"client-{uuid.uuid4().hex[:10]}"


def _obs(patient: str, seconds: float = 12.4, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [LOINC_TUG]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": seconds, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"},
        **extra,
    }


# -- fhirpy ------------------------------------------------------------------------------------
def test_fhirpy_search_follows_next_links_to_the_total(fhirpy: SyncFHIRClient) -> None:
    patient = _patient()
    created = {
        fhirpy.resource("Observation", **_obs(patient, 10 + i / 10)).save().id for i in range(2 * PAGE + 5)
    }
    search = fhirpy.resources("Observation").search(subject=f"Patient/{patient}").limit(PAGE)
    first_page = search.fetch_raw()
    assert first_page.total == 2 * PAGE + 5
    assert len(first_page.entry) == PAGE
    assert any(link.relation == "next" for link in first_page.link)
    seen = [obs.id for obs in search]  # iterating follows every next link
    assert len(seen) == len(set(seen)) == 2 * PAGE + 5
    assert set(seen) == created
    assert search.count() == 2 * PAGE + 5


def test_fhirpy_reads_and_refreshes(fhirpy: SyncFHIRClient) -> None:
    obs = fhirpy.resource("Observation", **_obs(_patient(), 12.40))
    obs.save()
    read = fhirpy.reference("Observation", obs.id).to_resource()
    assert read.id == obs.id and read["valueQuantity"]["value"] == 12.4
    assert fhirpy.get("Observation", obs.id)["meta"]["versionId"] == "1"
    read.refresh()  # If-None-Match: 1 -> 304, the resource stays as it was
    assert read["meta"]["versionId"] == "1"


def test_fhirpy_conditional_create_does_not_duplicate(fhirpy: SyncFHIRClient, base: str, token: str) -> None:
    patient = _patient()
    ident = {"system": "urn:relearn:test-obs", "value": uuid.uuid4().hex}
    criteria = {"identifier": f"{ident['system']}|{ident['value']}"}
    observations = fhirpy.resources("Observation").search(**criteria)
    # fhirpy's own conditional create sends the criteria as a query string: refused, clearly, nothing stored.
    with pytest.raises(OperationOutcome) as refused:
        observations.get_or_create(fhirpy.resource("Observation", **_obs(patient, identifier=[ident])))
    assert "If-None-Exist" in str(refused.value)
    assert observations.count() == 0
    # The spec's way (If-None-Exist), through fhirpy's extra headers: the second create finds the first.
    with_header = SyncFHIRClient(
        base,
        authorization=f"Bearer {token}",
        extra_headers={"If-None-Exist": f"identifier={criteria['identifier']}"},
    )
    first = with_header.resource("Observation", **_obs(patient, identifier=[ident])).save()
    second = with_header.resource("Observation", **_obs(patient, identifier=[ident])).save()
    assert second.id == first.id
    assert observations.count() == 1


def test_fhirpy_updates_with_versions(fhirpy: SyncFHIRClient, base: str, token: str) -> None:
    obs = fhirpy.resource("Observation", **_obs(_patient(), status="preliminary"))
    obs.save()
    assert obs["meta"]["versionId"] == "1"
    obs["status"] = "final"
    obs.save()
    assert obs["meta"]["versionId"] == "2"
    obs["status"] = "amended"
    obs.save()
    assert obs["meta"]["versionId"] == "3"
    assert fhirpy.get("Observation", obs.id)["status"] == "amended"

    stale = SyncFHIRClient(base, authorization=f"Bearer {token}", extra_headers={"If-Match": 'W/"2"'})
    with pytest.raises(MultipleResourcesFound) as refused:  # fhirpy's name for any 412
        stale.resource("Observation", **{**obs, "status": "corrected"}).save()
    assert "If-Match version 2 failed" in str(refused.value)
    current = SyncFHIRClient(base, authorization=f"Bearer {token}", extra_headers={"If-Match": 'W/"3"'})
    updated = current.resource("Observation", **{**obs, "status": "corrected"}).save()
    assert updated["meta"]["versionId"] == "4"

    with pytest.raises(OperationOutcome) as patch:  # PATCH is answered 405 with an OperationOutcome
        obs.patch(status="cancelled")
    assert patch.value.resource["issue"][0]["code"] == "not-supported"
    assert fhirpy.get("Observation", obs.id)["status"] == "corrected"


def _session_bundle(patient: str, *, broken: bool = False) -> dict[str, Any]:
    """An Encounter and its Procedure linked by a urn:uuid; ``broken`` adds a Procedure without status."""
    enc = f"urn:uuid:{uuid.uuid4()}"
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
    }
    procedure = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": {"text": "heel raises"},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": enc},
    }
    entries = [
        {"fullUrl": enc, "resource": encounter, "request": {"method": "POST", "url": "Encounter"}},
        {"resource": procedure, "request": {"method": "POST", "url": "Procedure"}},
    ]
    if broken:
        no_status = {k: v for k, v in procedure.items() if k != "status"}
        entries.append({"resource": no_status, "request": {"method": "POST", "url": "Procedure"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_fhirpy_transaction_is_atomic(fhirpy: SyncFHIRClient) -> None:
    patient = _patient()
    out = fhirpy.execute("", method="post", data=_session_bundle(patient))
    assert out["type"] == "transaction-response"
    encounter_id = out["entry"][0]["resource"]["id"]
    assert out["entry"][1]["resource"]["encounter"]["reference"] == f"Encounter/{encounter_id}"

    with pytest.raises(OperationOutcome) as refused:
        fhirpy.execute("", method="post", data=_session_bundle(patient, broken=True))
    assert "Bundle.entry[2].resource.status" in str(refused.value)
    assert fhirpy.resources("Encounter").search(subject=f"Patient/{patient}").count() == 1
    assert fhirpy.resources("Procedure").search(subject=f"Patient/{patient}").count() == 1


def test_fhirpy_cross_service_batch_and_refused_transaction(fhirpy: SyncFHIRClient) -> None:
    patient = _patient()
    device = {
        "resourceType": "Device",
        "status": "active",
        "patient": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:relearn:test-device", "value": uuid.uuid4().hex}],
    }
    entries = [
        {"resource": _obs(patient), "request": {"method": "POST", "url": "Observation"}},
        {"resource": device, "request": {"method": "POST", "url": "Device"}},
    ]
    out = fhirpy.execute(
        "", method="post", data={"resourceType": "Bundle", "type": "batch", "entry": entries}
    )
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    assert out["entry"][1]["resource"]["resourceType"] == "Device"
    with pytest.raises(OperationOutcome) as refused:
        fhirpy.execute(
            "", method="post", data={"resourceType": "Bundle", "type": "transaction", "entry": entries}
        )
    assert refused.value.resource["issue"][0]["code"] == "not-supported"
    assert "evaluation" in str(refused.value) and "device-gateway" in str(refused.value)
    assert fhirpy.resources("Observation").search(subject=f"Patient/{patient}").count() == 1


# -- fhirclient (SMART client-py) --------------------------------------------------------------
def test_client_py_search_pages_through_every_result(smart: smart_client.FHIRClient) -> None:
    patient = _patient()
    ids = set()
    for i in range(PAGE + 3):
        created = Observation(_obs(patient, 20 + i)).create(smart.server)
        ids.add(created["id"])
    search = Observation.where(struct={"subject": f"Patient/{patient}", "_count": str(PAGE)})
    pages = list(search.perform_iter(smart.server))
    assert len(pages) == 2 and pages[0].total == PAGE + 3
    found = [r.id for r in search.perform_resources_iter(smart.server)]
    assert len(found) == PAGE + 3 and set(found) == ids


def test_client_py_reads_updates_and_detects_stale_versions(smart: smart_client.FHIRClient) -> None:
    created = Observation(_obs(_patient(), status="preliminary")).create(smart.server)
    obs = Observation.read(created["id"], smart.server)
    assert obs.meta.versionId == "1" and obs.valueQuantity.value == 12.4
    obs.status = "final"
    assert obs.update(smart.server)["meta"]["versionId"] == "2"
    obs = Observation.read(obs.id, smart.server)
    assert obs.status == "final" and obs.meta.versionId == "2"

    session = smart.server.session
    session.headers["If-Match"] = 'W/"1"'
    try:
        obs.status = "amended"
        with pytest.raises(requests.HTTPError) as stale:
            obs.update(smart.server)
    finally:
        del session.headers["If-Match"]
    answer = stale.value.response
    assert answer is not None and answer.status_code == 412
    assert answer.json()["resourceType"] == "OperationOutcome"
    assert Observation.read(obs.id, smart.server).status == "final"


def test_client_py_conditional_create_with_if_none_exist(smart: smart_client.FHIRClient) -> None:
    patient = _patient()
    ident = {"system": "urn:relearn:test-obs", "value": uuid.uuid4().hex}
    session = smart.server.session
    session.headers["If-None-Exist"] = f"identifier={ident['system']}|{ident['value']}"
    try:
        first = Observation(_obs(patient, identifier=[ident])).create(smart.server)
        second = Observation(_obs(patient, identifier=[ident])).create(smart.server)
    finally:
        del session.headers["If-None-Exist"]
    assert second["id"] == first["id"]
    bundle = Observation.where(struct={"subject": f"Patient/{patient}"}).perform_iter(smart.server)
    assert next(bundle).total == 1


def test_client_py_transaction_bundle(smart: smart_client.FHIRClient) -> None:
    patient = _patient()
    first, second = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = Bundle()
    bundle.type = "transaction"
    bundle.entry = []
    for full_url, obs in (
        (first, _obs(patient, 11.0)),
        (second, _obs(patient, 12.0, hasMember=[{"reference": first}])),
    ):
        entry = BundleEntry()
        entry.fullUrl = full_url
        entry.resource = Observation(obs)
        entry.request = BundleEntryRequest({"method": "POST", "url": "Observation"})
        bundle.entry.append(entry)
    out = Bundle(bundle.create(smart.server))
    assert out.type == "transaction-response"
    assert [e.response.status for e in out.entry] == ["201 Created", "201 Created"]
    member_id = out.entry[0].resource.id
    assert out.entry[1].resource.hasMember[0].reference == f"Observation/{member_id}"
    assert out.entry[1].response.location.startswith("Observation/")
