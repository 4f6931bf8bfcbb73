"""The BALP mapping of an access record: interaction codes, outcome, agents, entities; valid FHIR R4B."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.auditevent import AuditEvent

from relearn.audit.mapper import audit_event, interaction, outcome_code
from relearn.audit.schemas import AuditRecord


@pytest.mark.parametrize(
    ("kind", "method", "path", "query", "expected"),
    [
        ("http", "GET", "/fhir/Observation/o1", False, ("read", "R")),
        ("http", "GET", "/fhir/Observation/o1/_history/2", False, ("vread", "R")),
        ("http", "GET", "/fhir/Observation/o1/_history", False, ("history-instance", "R")),
        ("http", "GET", "/fhir/Observation/_history", False, ("history-type", "R")),
        ("http", "GET", "/fhir/Observation", True, ("search-type", "E")),
        ("http", "POST", "/fhir/Observation/_search", False, ("search-type", "E")),
        ("http", "POST", "/fhir/Observation", False, ("create", "C")),
        ("http", "PUT", "/fhir/Observation/o1", False, ("update", "U")),
        ("http", "PATCH", "/fhir/Observation/o1", False, ("patch", "U")),
        ("http", "DELETE", "/fhir/Observation/o1", False, ("delete", "D")),
        ("http", "POST", "/fhir/Subscription/s1/$status", False, ("operation", "E")),
        ("http", "POST", "/fhir", False, ("transaction", "E")),
        ("http", "POST", "/plans/p1/activate", False, ("create", "C")),
        ("http", "GET", "/plans", True, ("search-type", "E")),
        ("http", "GET", "/plans/p1", False, ("read", "R")),
        ("http", "PUT", "/plans/p1/status", False, ("update", "U")),
        ("websocket", "WS", "/ingest/ws", False, ("operation", "E")),
    ],
)
def test_interaction(kind: str, method: str, path: str, query: bool, expected: tuple[str, str]) -> None:
    assert interaction(kind, method, path, query) == expected


def test_outcome_codes() -> None:
    assert [outcome_code(s) for s in (200, 201, 101, 304, 401, 403, 404, 422, 500, 503)] == [
        "0", "0", "0", "0", "4", "4", "4", "4", "8", "8"
    ]  # fmt: skip


def _record(**changes: Any) -> AuditRecord:
    data: dict[str, Any] = {
        "recorded": datetime(2026, 12, 6, 10, 0, tzinfo=UTC).isoformat(),
        "service": "evaluation",
        "site": "https://fhir.example.org/fhir",
        "kind": "http",
        "method": "GET",
        "path": "/fhir/Observation",
        "query": "patient=a,b&_count=10",
        "status": 200,
        "requestId": "rid-1",
        "clientHost": "10.0.0.7",
        "patients": ["a", "b"],
        "principal": {"clientId": "ehr-demo", "subject": "Practitioner/pt-1", "scope": "user/*.rs"},
    }
    return AuditRecord.model_validate({**data, **changes})


def test_a_search_touching_two_patients_is_a_balp_patient_query() -> None:
    event = audit_event(_record(), "e1")
    AuditEvent.model_validate(event)  # valid FHIR R4B
    assert event["meta"]["profile"] == [
        "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery"
    ]
    assert (event["type"]["code"], event["subtype"][0]["code"], event["action"]) == (
        "rest",
        "search-type",
        "E",
    )
    patients = [e["what"]["reference"] for e in event["entity"] if e.get("role", {}).get("code") == "1"]
    assert patients == ["Patient/a", "Patient/b"]
    query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
    assert base64.b64decode(query["query"]).decode() == "patient=a,b&_count=10"
    client, user, server = event["agent"]
    assert client["who"]["identifier"]["value"] == "ehr-demo" and client["requestor"] is False
    assert client["network"] == {"address": "10.0.0.7", "type": "2"}
    assert user["type"]["coding"][0]["code"] == "UserOauthAgent" and user["requestor"] is True
    assert server["type"]["coding"][0]["code"] == "110152"
    assert event["source"]["observer"] == {"display": "relearn-evaluation"}


def test_a_denied_read_without_a_token_and_a_device() -> None:
    denied = audit_event(
        _record(method="GET", path="/fhir/Observation/o1", query="", status=401, principal=None), "e2"
    )
    AuditEvent.model_validate(denied)
    assert (denied["outcome"], denied["outcomeDesc"], denied["action"]) == ("4", "HTTP 401", "R")
    assert "meta" not in denied  # BALP's profiles are of successful accesses
    assert denied["agent"][0]["who"] == {"display": "unauthenticated client"}
    assert {"what": {"reference": "Observation/o1"}}.items() <= denied["entity"][2].items()
    device = audit_event(
        _record(
            kind="websocket",
            method="WS",
            path="/ingest/ws",
            query="",
            status=101,
            patients=[],
            principal={"clientId": "hub", "subject": "hub", "device": "relearn-dev-hub"},
        ),
        "e3",
    )
    AuditEvent.model_validate(device)
    assert device["agent"][1]["who"] == {"reference": "Device/relearn-dev-hub"}
    assert device["meta"]["profile"][0].endswith("IHE.BasicAudit.Query")
