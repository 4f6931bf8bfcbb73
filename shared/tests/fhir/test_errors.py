"""Every failure is an OperationOutcome with the right status, naming what was wrong."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

    from relearn.shared.fhir.store import FhirStore
    from shared.tests.fhir.conftest import Api


def _issue(api: Api, r: Any) -> dict[str, Any]:
    outcome = api.json(r)
    assert outcome["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = outcome["issue"][0]
    return issue


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"status": "bogus"}, "Observation.status"),
        ({"status": None}, "Observation.status"),
        ({"code": {"coding": [{"system": 3}]}}, "Observation.code.coding[0].system"),
        ({"effectiveDateTime": "2013-02-30"}, "Observation.effectiveDateTime"),
        ({"valueString": "also a value"}, "Observation.value[x]"),
        ({"unknownElement": 1}, "Observation.unknownElement"),
        ({"component": [{"code": {"text": "c"}, "valueQuantity": {"value": 1, "comparator": "~"}}]},
         "Observation.component[0].valueQuantity.comparator"),
    ],
)  # fmt: skip
def test_invalid_resource_names_the_field(api: Api, change: dict[str, Any], expression: str) -> None:
    obs = {k: v for k, v in {**api.observation(api.new_patient()), **change}.items() if v is not None}
    r = api.call("POST", "/fhir/Observation", body=obs)
    assert r.status_code == 400
    assert expression in [e for i in api.json(r)["issue"] for e in i.get("expression", [])]


def test_wrong_resource_type(api: Api) -> None:
    r = api.call("POST", "/fhir/Observation", body={"resourceType": "Patient"})
    assert r.status_code == 400
    assert _issue(api, r)["expression"] == ["Observation.resourceType"]
    r = api.call("PUT", "/fhir/Patient/x", body={**api.observation("x"), "id": "x"})
    assert r.status_code == 400


def test_malformed_json(api: Api) -> None:
    r = api.call("POST", "/fhir/Observation", body=b'{"resourceType": "Observation", "status": ')
    assert r.status_code == 400
    assert "line 1" in _issue(api, r)["diagnostics"]
    assert api.call("POST", "/fhir/Observation", body=b"[1, 2]").status_code == 400
    assert api.call("POST", "/fhir/Observation", body=b'{"value": NaN}').status_code == 400


def test_xml_is_refused(api: Api) -> None:
    xml = b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/></Observation>'
    r = api.call("POST", "/fhir/Observation", body=xml, headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    assert _issue(api, r)["code"] == "not-supported"
    assert api.get("/fhir/Observation", params={"_format": "xml"}).status_code == 406
    assert api.get("/fhir/Observation", headers={"Accept": "application/fhir+xml"}).status_code == 406
    assert api.get("/fhir/Observation", params={"_format": "json"}).status_code == 200
    plain_json = api.call(
        "POST", "/fhir/Observation", body=api.observation("x"), headers={"Content-Type": "application/json"}
    )
    assert plain_json.status_code == 201


def test_unknown_routes_and_methods(api: Api) -> None:
    r = api.get("/fhir/Unknown/1")
    assert r.status_code == 404 and _issue(api, r)["code"] == "not-found"
    r = api.call("PATCH", "/fhir/Observation/1")
    assert r.status_code == 405 and _issue(api, r)["code"] == "not-supported"
    assert "allow" in r.headers
    assert api.get("/fhir/Observation/x/_history/notanumber").status_code == 404


@pytest.fixture
def crashing(
    make_app: Callable[[str], tuple[FastAPI, FhirStore, Engine]], pg_database: Callable[[str], str]
) -> Iterator[TestClient]:
    app, _store, engine = make_app(pg_database("crash"))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    @app.get("/typed")
    def typed(n: int) -> dict[str, int]:
        return {"n": n}

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
    engine.dispose()


def test_unexpected_errors_are_500_without_internals(crashing: TestClient) -> None:
    r = crashing.get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "hunter2" not in r.text and "RuntimeError" not in r.text


def test_request_validation_errors_are_400_outcomes(crashing: TestClient) -> None:
    r = crashing.get("/typed", params={"n": "abc"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["code"] == "invalid" and issue["expression"] == ["n"]
