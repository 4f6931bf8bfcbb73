"""`make run`, as a newcomer meets it: separate processes, the real broker, SQLite files under var/.

Starts the platform with the same code `make run` uses (on free ports, in a temporary var/),
then checks what the issue promises: /metadata on the one FHIR base URL lists every
service's types, every /readyz answers, the OpenAPI docs are served, and a token from the
development issuer is required (401 without, 403 with the wrong scope).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relearn.devtools.platform import Platform, PlatformSettings


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = PlatformSettings.on_free_ports(tmp_path_factory.mktemp("var"))
    p = Platform(settings)
    try:
        p.start(ready_timeout_s=120)
        yield p
    finally:
        p.stop()


def test_one_fhir_base_url_lists_every_service_type(platform: Platform) -> None:
    resp = httpx.get(f"{platform.settings.fhir_base_url}/metadata")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/fhir+json")
    statement = resp.json()
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"Observation", "CarePlan", "Goal", "ServiceRequest", "Encounter", "Procedure", "Device"} <= types
    assert {"AuditEvent", "Provenance"} <= types  # issue 14: the audit service and the plan's Provenance
    assert statement["fhirVersion"] == "4.0.1"


def test_every_service_is_ready_and_documents_its_api(platform: Platform) -> None:
    for name, url in platform.urls().items():
        assert httpx.get(f"{url}/readyz").status_code == 200, name
        if name != "front-door":
            spec = httpx.get(f"{url}/openapi.json").json()
            assert spec["paths"], name
            assert httpx.get(f"{url}/docs").status_code == 200, name
    for spec in platform.settings.services():
        assert (platform.var / f"{spec.name}.db").exists(), "embedded default: a SQLite file per service"


def test_a_token_is_required_and_its_scopes_are_enforced(platform: Platform) -> None:
    base = platform.settings.fhir_base_url
    no_token = httpx.get(f"{base}/Observation")
    assert no_token.status_code == 401
    assert no_token.json()["resourceType"] == "OperationOutcome"

    wrong = platform.token("system/CarePlan.read")
    assert httpx.get(f"{base}/Observation", headers={"Authorization": f"Bearer {wrong}"}).status_code == 403

    right = platform.token("system/Observation.read system/Observation.write")
    headers = {"Authorization": f"Bearer {right}"}
    # Sent as text: the decimal 12.40 must come back with its trailing zero.
    obs = (
        '{"resourceType":"Observation","status":"final",'
        '"code":{"coding":[{"system":"http://loinc.org","code":"89423-8"}]},'
        '"subject":{"reference":"Patient/journey-1"},'
        '"valueQuantity":{"value":12.40,"unit":"s","system":"http://unitsofmeasure.org","code":"s"}}'
    )
    created = httpx.post(
        f"{base}/Observation", content=obs, headers={**headers, "Content-Type": "application/fhir+json"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["location"].startswith(f"{base}/Observation/")
    read = httpx.get(created.headers["location"].split("/_history")[0], headers=headers)
    assert read.status_code == 200
    assert b'"value":12.40' in read.content  # decimal digits as sent, through the front door


def test_a_patient_token_sees_only_its_patient(platform: Platform) -> None:
    base = platform.settings.fhir_base_url
    writer = {"Authorization": f"Bearer {platform.token('system/Observation.write')}"}
    for patient in ("alice", "bob"):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pain"},
            "subject": {"reference": f"Patient/{patient}"},
        }
        assert httpx.post(f"{base}/Observation", json=obs, headers=writer).status_code == 201
    alice = {"Authorization": f"Bearer {platform.token('patient/*.read', patient='alice')}"}
    bundle = httpx.get(f"{base}/Observation", headers=alice).json()
    subjects = {e["resource"]["subject"]["reference"] for e in bundle.get("entry", [])}
    assert subjects == {"Patient/alice"}


def test_unknown_resource_type_is_an_operation_outcome(platform: Platform) -> None:
    resp = httpx.get(f"{platform.settings.fhir_base_url}/Medication/1")
    assert resp.status_code == 404
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_var_holds_logs_per_process(platform: Platform) -> None:
    logs = Path(platform.var) / "logs"
    expected = {
        "evaluation",
        "plan",
        "sessions",
        "device-gateway",
        "subscriptions",
        "authorization",
        "audit",
        "reports",
        "front-door",
    }
    assert {p.stem for p in logs.glob("*.log")} >= expected
