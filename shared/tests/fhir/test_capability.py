"""The CapabilityStatement is valid R4 and tells the truth about what is served."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.observation import Observation

from relearn.shared.fhir.capability import capability_statement
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.handlers import install_error_handlers
from relearn.shared.fhir.router import fhir_router
from relearn.shared.fhir.search_params import token
from relearn.shared.fhir.store import FhirStore

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


def test_metadata_is_public_and_valid(api: Api) -> None:
    r = api.get("/fhir/metadata", token=None)
    assert r.status_code == 200
    statement = api.json(r)
    CapabilityStatement.model_validate(statement)
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert rest["security"]["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    oauth = rest["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": "https://auth.example.org/token"} in oauth
    by_type = {res["type"]: res for res in rest["resource"]}
    assert set(by_type) == {"Observation", "Patient"}
    obs = by_type["Observation"]
    names = {p["name"] for p in obs["searchParam"]}
    assert {"code", "date", "patient", "value-quantity", "_id", "_lastUpdated"} <= names
    assert obs["searchInclude"] == ["Observation:has-member", "Observation:patient", "Observation:subject"]
    assert "Observation:patient" in by_type["Patient"]["searchRevInclude"]


def test_declared_parameters_are_exactly_the_served_ones(api: Api) -> None:
    statement = api.json(api.get("/fhir/metadata", token=None))
    obs = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    for param in obs["searchParam"]:
        r = api.get("/fhir/Observation", params={param["name"]: "x" if param["type"] == "string" else "1"},
                    headers={"Prefer": "handling=strict"})  # fmt: skip
        assert r.status_code != 400 or "Unknown search parameter" not in r.text, param["name"]


def test_only_declared_interactions_are_listed() -> None:
    read_only = ResourceDefinition(
        type="Observation",
        model=Observation,
        search_params=[token("code", "code")],
        interactions={"read", "search-type"},
        profile="https://relearn.example/StructureDefinition/measurement",
    )
    statement = capability_statement([read_only], base_url="https://x/fhir", software_name="s", version="1")
    CapabilityStatement.model_validate(statement)
    resource = statement["rest"][0]["resource"][0]
    assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
    assert resource["profile"] == "https://relearn.example/StructureDefinition/measurement"
    assert resource["conditionalDelete"] == "not-supported" and resource["updateCreate"] is False
    assert "extension" not in statement["rest"][0]["security"]  # no token URL was given


def test_undeclared_interactions_have_no_route() -> None:
    read_only = ResourceDefinition(
        type="Observation", model=Observation, interactions={"read", "search-type"}
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(fhir_router([read_only], FhirStore()))
    with TestClient(app) as client:
        assert client.post("/fhir/Observation", content=b"{}").status_code == 405
        assert client.delete("/fhir/Observation/1").status_code == 405
        assert client.get("/fhir/Observation/1/_history").status_code == 404


def test_openapi_documents_the_search_parameters(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    search = doc["paths"]["/fhir/Observation"]["get"]
    assert {"code", "date", "patient", "_count", "_sort"} <= {p["name"] for p in search["parameters"]}
    create = doc["paths"]["/fhir/Observation"]["post"]
    assert "application/fhir+json" in create["requestBody"]["content"]
