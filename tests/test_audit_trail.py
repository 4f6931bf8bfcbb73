"""Issue 14, audit: every access to every service leaves one AuditEvent (IHE BALP), allowed, denied or
failed, stored by the audit service and searchable at the one FHIR base URL (the platform as ``make run``
starts it, PostgreSQL, its own broker).

Each request carries its own X-Request-ID; the AuditEvent records it (entity ``XrequestId``), so the test
counts the events of exactly its own requests among whatever else the session's tests did.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from relearn.devtools.apps import wait_for
from relearn.devtools.journey.evaluations import evaluation_body
from relearn.devtools.platform import Platform
from relearn.shared.fhir import identifier_system

REQUEST_ID = identifier_system("request-id")
CLIENT_ID = identifier_system("client-id")


def _condition(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "239873007"}], "text": "Knee OA"},
        "subject": {"reference": f"Patient/{patient}"},
    }


def _patients(event: dict[str, Any]) -> set[str]:
    return {
        e["what"]["reference"].removeprefix("Patient/")
        for e in event.get("entity", [])
        if e.get("role", {}).get("code") == "1"
    }


def _request_id(event: dict[str, Any]) -> str:
    return next(
        e["what"]["identifier"]["value"]
        for e in event["entity"]
        if e.get("what", {}).get("identifier", {}).get("system") == REQUEST_ID
    )


def test_every_access_is_audited_and_a_patient_reads_who_read_their_record(
    running_platform: Platform,
) -> None:
    base = running_platform.settings.fhir_base_url
    system = {"Authorization": f"Bearer {running_platform.token()}"}
    a, b = f"aud-a-{uuid.uuid4().hex[:8]}", f"aud-b-{uuid.uuid4().hex[:8]}"
    narrow = {"Authorization": f"Bearer {running_platform.token('system/Observation.read')}"}
    made: dict[str, tuple[int, str]] = {}  # request id -> (status, what)

    def call(what: str, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
        rid = f"audit-test-{uuid.uuid4().hex}"
        resp = httpx.request(
            method, f"{base}{path}", headers={**headers, "X-Request-ID": rid}, timeout=30, **kw
        )
        made[rid] = (resp.status_code, what)
        return resp

    created_a = call("create-a", "POST", "/Condition", system, json=_condition(a))
    assert created_a.status_code == 201, created_a.text
    assert call("create-b", "POST", "/Condition", system, json=_condition(b)).status_code == 201
    cid = created_a.json()["id"]
    assert call("read", "GET", f"/Condition/{cid}", system).status_code == 200
    both = call("search-both", "GET", "/Condition", system, params={"patient": f"{a},{b}"})
    assert both.status_code == 200 and both.json()["total"] == 2
    assert call("no-token", "GET", f"/Condition/{cid}", {}).status_code == 401
    assert call("no-scope", "GET", f"/Condition/{cid}", narrow).status_code == 403
    assert call("missing", "GET", "/Condition/no-such-condition", system).status_code == 404
    assert (
        call("update", "PUT", f"/Condition/{cid}", system, json={**_condition(a), "id": cid}).status_code
        == 200
    )
    patient_a = {"Authorization": f"Bearer {running_platform.token('patient/*.read', patient=a)}"}
    own = call("patient-search", "GET", "/Condition", patient_a, params={"patient": a})
    assert own.status_code == 200 and own.json()["total"] == 1
    # A live connection refused for want of a token (the gateway accepts, then closes 4401).
    ws_rid = f"audit-test-{uuid.uuid4().hex}"
    host, port = running_platform.settings.host, running_platform.settings.front_door_port
    with (
        connect(
            f"ws://{host}:{port}/biofeedback/ws?session=no-such-session",
            additional_headers={"X-Request-ID": ws_rid},
            open_timeout=30,
        ) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    made[ws_rid] = (401, "websocket")

    auditor = {"Authorization": f"Bearer {running_platform.token('system/AuditEvent.read')}"}
    ids = ",".join(f"{REQUEST_ID}|{rid}" for rid in made)

    def audited() -> list[dict[str, Any]] | None:
        resp = httpx.get(
            f"{base}/AuditEvent",
            params={"entity-identifier": ids, "_count": 100},
            headers=auditor,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        events = [e["resource"] for e in resp.json().get("entry", [])]
        return events if len(events) >= len(made) else None

    events = wait_for(audited, timeout_s=60, what="an AuditEvent per request")
    by_rid: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_rid.setdefault(_request_id(event), []).append(event)
    # Exactly one event per request made, denied and failed ones included.
    assert {rid: len(v) for rid, v in by_rid.items()} == dict.fromkeys(made, 1)
    got = {made[rid][1]: v[0] for rid, v in by_rid.items()}

    def subtype(e: dict[str, Any]) -> str:
        return str(e["subtype"][0]["code"])

    assert [
        (got[w]["action"], subtype(got[w]), got[w]["outcome"]) for w in made.values() for w in [w[1]]
    ] == [
        ("C", "create", "0"),
        ("C", "create", "0"),
        ("R", "read", "0"),
        ("E", "search-type", "0"),
        ("R", "read", "4"),
        ("R", "read", "4"),
        ("R", "read", "4"),
        ("U", "update", "0"),
        ("E", "search-type", "0"),
        ("E", "operation", "4"),
    ]
    for what, event in got.items():
        assert event["type"]["code"] == "rest"
        service = "device-gateway" if what == "websocket" else "evaluation"
        assert event["source"]["observer"]["display"] == f"relearn-{service}"
    assert got["websocket"]["outcomeDesc"] == "HTTP 401"
    assert _patients(got["create-a"]) == {a}
    assert _patients(got["create-b"]) == {b}
    assert _patients(got["read"]) == {a}
    assert _patients(got["update"]) == {a}
    # A search: one entity per patient it touched, and the query, base64.
    search = got["search-both"]
    assert _patients(search) == {a, b}
    query = next(e for e in search["entity"] if e.get("role", {}).get("code") == "24")
    assert base64.b64decode(query["query"]).decode() == f"patient={a}%2C{b}"
    assert search["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientQuery")
    # Who: the client (not the requestor) and the user (the requestor); a denied request still names them.
    for what in ("read", "no-scope"):
        agents = got[what]["agent"]
        client = next(g for g in agents if g["type"]["coding"][0]["code"] == "110153")
        assert client["who"]["identifier"] == {"system": CLIENT_ID, "value": "relearn-dev"}
        assert client["requestor"] is False
        assert any(g["requestor"] for g in agents)
    assert got["no-scope"]["outcomeDesc"] == "HTTP 403"
    assert got["no-token"]["outcomeDesc"] == "HTTP 401"
    assert got["missing"]["outcomeDesc"] == "HTTP 404"
    assert got["no-token"]["agent"][0]["who"] == {"display": "unauthenticated client"}

    # The patient reads who read their record: their compartment only.
    audit_a = {"Authorization": f"Bearer {running_platform.token('patient/AuditEvent.read', patient=a)}"}
    mine = httpx.get(f"{base}/AuditEvent", params={"_count": 100}, headers=audit_a, timeout=30)
    assert mine.status_code == 200, mine.text
    seen = [e["resource"] for e in mine.json()["entry"]]
    assert seen and all(a in _patients(e) for e in seen)
    assert {_request_id(e) for e in seen} >= {
        rid
        for rid, (_, w) in made.items()
        if w in ("create-a", "read", "search-both", "update", "patient-search")
    }
    assert not any(_request_id(e) in made and made[_request_id(e)][1] == "create-b" for e in seen)
    readers = {
        g["who"]["identifier"]["value"]
        for e in seen
        for g in e["agent"]
        if g["type"]["coding"][0]["code"] == "110153" and "identifier" in g["who"]
    }
    assert "relearn-dev" in readers
    # Another patient's audit is not theirs to see; a wildcard scope does not grant the audit trail.
    other = httpx.get(f"{base}/AuditEvent", params={"patient": b}, headers=audit_a, timeout=30)
    assert other.status_code == 200
    assert all(a in _patients(e["resource"]) for e in other.json().get("entry", []))
    wildcard = httpx.get(f"{base}/AuditEvent", headers=system, timeout=30)
    assert wildcard.status_code == 403


def test_provenance_of_every_plan_version_and_x_provenance(running_platform: Platform) -> None:
    """The engine's draft (from the evaluation event) and the therapist's activation each leave a Provenance
    of the CarePlan version and the Goals/ServiceRequests written with it; a client's X-Provenance is stored
    with its target filled in; a malformed one is a 400 naming the header, and the write does not happen."""
    base = running_platform.settings.fhir_base_url
    door = running_platform.urls()["front-door"]
    clinic = {"Authorization": f"Bearer {running_platform.token()}"}
    patient = f"prov-{uuid.uuid4().hex[:8]}"
    body = evaluation_body(patient, "initial", datetime.now(UTC) - timedelta(days=1))
    resp = httpx.post(f"{door}/evaluations", json=body, headers=clinic, timeout=30)
    assert resp.status_code in (200, 201), resp.text

    def drafted() -> str | None:
        plans = httpx.get(f"{door}/plans", params={"patient": patient}, headers=clinic, timeout=30).json()
        return str(plans[0]["id"]) if plans else None

    plan_id = wait_for(drafted, timeout_s=60, what="a plan drafted from the evaluation")
    theirs = {
        "resourceType": "Provenance",
        "target": [{"reference": "Patient/ignored"}],  # the server sets the target
        "recorded": "2026-12-01T10:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/pt-42", "display": "Dr Chen"}}],
        "reason": [{"text": "reviewed at the clinic visit"}],
    }
    activated = httpx.post(
        f"{door}/plans/{plan_id}/activate",
        json={"reason": "reviewed with the patient"},
        headers={**clinic, "X-Provenance": json.dumps(theirs)},
        timeout=30,
    )
    assert activated.status_code == 200, activated.text
    bad = httpx.put(
        f"{door}/plans/{plan_id}/status",
        json={"status": "on-hold", "reason": "holiday"},
        headers={**clinic, "X-Provenance": "{not json"},
        timeout=30,
    )
    assert bad.status_code == 400, bad.text
    assert "X-Provenance" in bad.text
    plan = httpx.get(f"{base}/CarePlan/{plan_id}", headers=clinic, timeout=30).json()
    assert plan["status"] == "active" and plan["meta"]["versionId"] == "2"  # the bad write did not happen

    found = httpx.get(
        f"{base}/Provenance", params={"patient": patient, "_count": 50}, headers=clinic, timeout=30
    ).json()
    provenances = [e["resource"] for e in found["entry"]]
    by_target: dict[str, list[dict[str, Any]]] = {}
    for p in provenances:
        for t in p["target"]:
            by_target.setdefault(t["reference"], []).append(p)
    draft = by_target[f"CarePlan/{plan_id}/_history/1"]
    assert len(draft) == 1
    assert any(t["reference"].startswith("Goal/") for t in draft[0]["target"])
    assert any(t["reference"].startswith("ServiceRequest/") for t in draft[0]["target"])
    assert draft[0]["activity"]["coding"][0]["code"] == "CREATE"
    # Drafted by the engine from the evaluation event (no request, so no client), for its practitioner.
    drafted_by = {a["type"]["coding"][0]["code"]: a for a in draft[0]["agent"]}
    assert set(drafted_by) == {"author", "assembler"}
    assert drafted_by["author"]["who"] == {"reference": "Practitioner/pt-journey"}
    assert drafted_by["assembler"]["who"]["display"] == "Relearn progression engine"
    assert drafted_by["assembler"]["onBehalfOf"] == {"reference": "Practitioner/pt-journey"}
    assert draft[0]["reason"][0]["text"].startswith("drafted")
    assert any(e["role"] == "source" for e in draft[0]["entity"])  # the evaluation it was drafted from

    edit = by_target[f"CarePlan/{plan_id}/_history/2"]
    ours = next(
        p for p in edit if any(a["who"].get("display") == "Relearn progression engine" for a in p["agent"])
    )
    codes = {a["type"]["coding"][0]["code"]: a for a in ours["agent"]}
    assert set(codes) == {"author", "assembler", "enterer"}
    assert codes["enterer"]["who"]["identifier"]["value"] == "relearn-dev"
    assert codes["assembler"]["onBehalfOf"] == codes["author"]["who"]
    assert ours["activity"]["coding"][0]["code"] == "UPDATE"
    assert "reviewed with the patient" in ours["reason"][0]["text"]
    assert {"role": "revision", "what": {"reference": f"CarePlan/{plan_id}/_history/1"}} in ours["entity"]
    client = [p for p in edit if p is not ours]
    assert len(client) == 1
    assert client[0]["agent"] == theirs["agent"] and client[0]["recorded"] == theirs["recorded"]
    assert {"reference": "Patient/ignored"} not in client[0]["target"]
    assert client[0]["target"] == ours["target"]
    # Searchable by target too.
    by_plan = httpx.get(
        f"{base}/Provenance", params={"target": f"CarePlan/{plan_id}"}, headers=clinic, timeout=30
    ).json()
    assert by_plan["total"] >= 3
