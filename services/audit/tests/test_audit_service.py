"""The audit service on PostgreSQL and the real broker: each audit record becomes one AuditEvent (a
redelivered event changes nothing, a malformed one does not stop the others), searchable by who may read
the trail."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer
from sqlmodel import Session

from relearn.audit.config import Settings
from relearn.audit.main import create_app
from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import AUDIT_EVENTS, CloudEvent, ProcessedEvent, producer_config
from relearn.shared.fhir import identifier_system

REQUEST_ID = identifier_system("request-id")


@pytest.fixture(scope="module")
def audit(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.audit",
        Settings,
        create_app,
        database_url=pg_database("audit_service"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
    )
    producer = KafkaProducer(**producer_config(broker.bootstrap, "test-audit"))
    with TestClient(app) as client:
        assert app.state.workers.consumers[0].wait_until_assigned(30)
        yield {"client": client, "issuer": issuer, "engine": app.state.engine, "producer": producer}
    producer.close()


def _auth(issuer: DevIssuer, scope: str, patient: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('relearn-dev', scope, patient=patient)}"}


def _record(patient: str, request_id: str) -> dict[str, Any]:
    return {
        "recorded": datetime.now(UTC).isoformat(),
        "service": "evaluation",
        "site": "http://127.0.0.1:8080/fhir",
        "kind": "http",
        "method": "GET",
        "path": "/fhir/Observation/o-1",
        "status": 200,
        "requestId": request_id,
        "patients": [patient],
        "principal": {"clientId": "ehr-demo", "subject": "ehr-demo", "scope": "system/*.read"},
    }


def _send(audit: dict[str, Any], event: CloudEvent, *, wait: bool = True) -> None:
    audit["producer"].send(AUDIT_EVENTS, key=event.key, value=event.to_bytes()).get(timeout=15)
    if not wait:
        return

    def processed() -> bool:
        with Session(audit["engine"]) as s:
            return s.get(ProcessedEvent, ("audit-store", event.id)) is not None

    wait_for(processed, what="the audit record processed")


def _search(audit: dict[str, Any], scope: str, context: str | None = None, **params: str) -> Any:
    """Search as a token with ``scope`` (and ``context``: its patient, for patient/ scopes)."""
    return audit["client"].get(
        "/fhir/AuditEvent", params=params, headers=_auth(audit["issuer"], scope, context)
    )


def test_each_record_is_stored_once_and_searchable(audit: dict[str, Any]) -> None:
    patient, rid = f"p-{uuid.uuid4().hex[:8]}", f"r-{uuid.uuid4().hex}"
    bad = CloudEvent.new("/relearn/evaluation", "audit.recorded.v1", patient, {"status": "not a record"})
    _send(audit, bad, wait=False)  # dead-lettered; the next one (same partition, after it) is stored
    event = CloudEvent.new("/relearn/evaluation", "audit.recorded.v1", patient, _record(patient, rid))
    _send(audit, event)
    _send(audit, CloudEvent.model_validate({**event.model_dump(), "time": datetime.now(UTC)}))  # redelivered

    found = _search(audit, "system/AuditEvent.read", **{"entity-identifier": f"{REQUEST_ID}|{rid}"})
    assert found.status_code == 200, found.text
    assert found.json()["total"] == 1
    stored = found.json()["entry"][0]["resource"]
    assert stored["id"] == event.id
    assert stored["subtype"][0]["code"] == "read"
    assert {"reference": f"Patient/{patient}"} in [e.get("what") for e in stored["entity"]]
    by_patient = _search(audit, "user/AuditEvent.read", patient=patient, outcome="0", action="R")
    assert by_patient.status_code == 200, by_patient.text
    assert event.id in {e["resource"]["id"] for e in by_patient.json()["entry"]}

    # The patient reads their own trail; another patient's token sees none of it; a wildcard is not enough.
    own = _search(audit, "patient/AuditEvent.read", patient)
    assert own.status_code == 200 and event.id in {e["resource"]["id"] for e in own.json()["entry"]}
    other = _search(audit, "patient/AuditEvent.read", "someone-else", patient=patient)
    assert other.status_code == 200 and other.json()["total"] == 0
    assert _search(audit, "system/*.read").status_code == 403
    assert audit["client"].get("/fhir/AuditEvent").status_code == 401
    assert audit["client"].get("/fhir/metadata").status_code == 200
