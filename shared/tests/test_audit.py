"""The audit record the request path builds: a valid CloudEvent, compact, naming who and which patients."""

from __future__ import annotations

import json

from relearn.shared.audit import AUDIT_EVENT_TYPE, _named_patients, _ws_status, encoded
from relearn.shared.audit_context import AuditContext
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.scopes import parse_scopes
from relearn.shared.events import AUDIT_EVENTS, CloudEvent, topic_for


def _ctx(**changes: object) -> AuditContext:
    base: dict[str, object] = {
        "kind": "http",
        "method": "GET",
        "path": "/fhir/Condition",
        "query": b"patient=b,a",
        "client_host": "10.1.2.3",
        "request_id": "rid-7",
        "service": "evaluation",
        "base_url": "https://fhir.example.org/fhir",
    }
    return AuditContext(**{**base, **changes})  # type: ignore[arg-type]


def test_an_event_is_a_valid_cloudevent_on_the_audit_topic() -> None:
    principal = Principal(
        "Practitioner/pt-1", "ehr-demo", parse_scopes("user/*.read"), raw_scope="user/*.read"
    )
    ctx = _ctx(principal=principal, patients={"b", "a"})
    row = encoded(ctx, 200, "evaluation", "https://fhir.example.org/fhir")
    event = CloudEvent.from_bytes(row.payload)
    assert (event.type, event.subject, event.id) == (AUDIT_EVENT_TYPE, "a", row.id)
    assert topic_for(event.type) == AUDIT_EVENTS
    assert event.data["patients"] == ["a", "b"]
    assert event.data["query"] == "patient=b,a"
    assert event.data["principal"] == {
        "clientId": "ehr-demo",
        "subject": "Practitioner/pt-1",
        "scope": "user/*.read",
    }
    assert (event.data["status"], event.data["requestId"], event.data["clientHost"]) == (
        200,
        "rid-7",
        "10.1.2.3",
    )
    assert len(row.payload) < 1024  # compact: the AuditEvent is built by the audit service
    other = encoded(ctx, 200, "evaluation", "https://fhir.example.org/fhir")
    assert other.id != row.id  # unique per event


def test_a_denied_request_without_a_token() -> None:
    row = encoded(_ctx(), 401, "evaluation", "https://fhir.example.org/fhir")
    data = json.loads(row.payload)["data"]
    assert "principal" not in data and data["status"] == 401
    assert row.subject == "evaluation"  # no patient touched: keyed by the service


def test_patients_named_by_the_request() -> None:
    ctx = _ctx(query=b"subject=Patient/p1&patient=p2,Patient/p3&code=x")
    _named_patients({"path_params": {"patient": "p4", "plan_id": "c1"}}, ctx)
    assert ctx.patients == {"p1", "p2", "p3", "p4"}
    bad = _ctx(query=b"patient=not%20an%20id,../x")
    _named_patients({}, bad)
    assert bad.patients == set()


def test_websocket_close_codes() -> None:
    assert [_ws_status({"code": c}) for c in (4401, 4403, 4404, 1000, 1001, 1011)] == [
        401,
        403,
        404,
        101,
        101,
        500,
    ]
