"""FHIR Subscriptions (R5 Backport IG) end to end: a real HTTP receiver, domain events on the real broker."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Any

import httpx
from fhirpy import SyncFHIRClient

from relearn.devtools.apps import wait_for
from relearn.shared.fhir import CANONICAL_URL

TOPIC = f"{CANONICAL_URL}/SubscriptionTopic"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
SECRET = "a-long-enough-shared-secret"


def subscription(
    endpoint: str,
    topic: str = "plan-progressed",
    criteria: str | None = None,
    *,
    channel: str = "rest-hook",
    content: str = "id-only",
    heartbeat: int | None = None,
    timeout: int = 2,
    max_count: int | None = None,
    headers: list[str] | None = None,
    extension: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ch_ext: list[dict[str, Any]] = [{"url": f"{BACKPORT}/backport-timeout", "valueUnsignedInt": timeout}]
    if heartbeat:
        ch_ext.append({"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": heartbeat})
    if max_count:
        ch_ext.append({"url": f"{BACKPORT}/backport-max-count", "valuePositiveInt": max_count})
    sub: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [f"{BACKPORT}/backport-subscription"]},
        "status": "requested",
        "reason": "tell the EHR",
        "criteria": f"{TOPIC}/{topic}",
        "channel": {
            "extension": ch_ext,
            "type": channel,
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": f"{BACKPORT}/backport-payload-content", "valueCode": content}]
            },
            "header": headers or [],
        },
        "extension": [
            {
                "url": f"{CANONICAL_URL}/StructureDefinition/subscription-secret",
                "valueString": SECRET,
            },
            *(extension or []),
        ],
    }
    if criteria:
        sub["_criteria"] = {
            "extension": [{"url": f"{BACKPORT}/backport-filter-criteria", "valueString": criteria}]
        }
    return sub


def _progressed(service: Any, patient: str, n: int, *, kind: str = "advance") -> None:
    for i in range(n):
        service.publish(
            "plan.progressed.v1",
            patient,
            {
                "carePlan": f"CarePlan/cp-{patient}",
                "versionId": i + 2,
                "kind": kind,
                "pattern": "sit-to-stand",
            },
        )


def _create(service: Any, body: dict[str, Any], **auth: Any) -> httpx.Response:
    return httpx.post(f"{service.fhir}/Subscription", json=body, headers=service.auth(**auth), timeout=30)


def _status(service: Any, sid: str) -> dict[str, Any]:
    resp = httpx.get(f"{service.fhir}/Subscription/{sid}/$status", headers=service.auth(), timeout=30)
    assert resp.status_code == 200, resp.text
    params = resp.json()["entry"][0]["resource"]["parameter"]
    return {
        p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in params if "part" not in p
    }


def test_topics_are_published_and_listed_in_the_capability_statement(service: Any) -> None:
    meta = httpx.get(f"{service.fhir}/metadata", timeout=30).json()
    sub = next(r for r in meta["rest"][0]["resource"] if r["type"] == "Subscription")
    assert sub["profile"] == f"{BACKPORT}/backport-subscription"
    assert f"{BACKPORT}/backport-subscription" in sub["supportedProfile"]
    canonicals = {e["valueCanonical"] for e in sub["extension"]}
    assert f"{TOPIC}/plan-progressed" in canonicals and len(canonicals) == 8
    assert {o["name"] for o in sub["operation"]} >= {"status", "events", "get-ws-binding-token"}
    topics = httpx.get(
        f"{service.fhir}/Basic", params={"code": "SubscriptionTopic"}, headers=service.auth(), timeout=30
    ).json()
    assert topics["total"] == 8
    urls = {
        e["valueUri"]
        for t in topics["entry"]
        for e in t["resource"]["extension"]
        if e["url"].endswith(".url")
    }
    assert urls == canonicals


def test_unsupported_requests_are_refused_naming_what(service: Any, receiver: Any) -> None:
    cases = [
        (subscription(receiver.url, topic="no-such-topic"), "no-such-topic"),
        (subscription(receiver.url, channel="email"), "email"),
        (subscription(receiver.url, criteria="CarePlan?colour=blue"), "colour"),
        (subscription("ftp://example.org/hook"), "ftp://example.org/hook"),
    ]
    for body, named in cases:
        resp = _create(service, body)
        assert resp.status_code == 400, resp.text
        outcome = resp.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert named in outcome["issue"][0]["diagnostics"]


def test_rest_hook_handshake_events_headers_signature_and_event_log(service: Any, receiver: Any) -> None:
    patient, other = f"p-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    body = subscription(
        receiver.url,
        criteria=f"CarePlan?patient=Patient/{patient}",
        headers=["Authorization: Bearer ehr-token"],
    )
    resp = _create(service, body)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    wait_for(lambda: receiver.of_kind("handshake"), what="the handshake")
    wait_for(lambda: _status(service, sid)["status"] == "active", what="status active")

    _progressed(service, other, 3)  # another patient: filtered out
    _progressed(service, patient, 5)
    _progressed(service, patient, 1, kind="regress")
    wait_for(lambda: len(receiver.numbers()) >= 6, what="six notifications")
    assert receiver.numbers() == [1, 2, 3, 4, 5, 6]
    note = receiver.of_kind("event-notification")[0]
    assert note.bundle["type"] == "history"
    assert note.status["resourceType"] == "Parameters"
    assert note.focuses[0].endswith(f"CarePlan/cp-{patient}")
    assert note.headers["authorization"] == "Bearer ehr-token"
    expected = "sha256=" + hmac.new(SECRET.encode(), note.body, hashlib.sha256).hexdigest()
    assert note.headers["x-relearn-signature"] == expected
    assert _status(service, sid)["events-since-subscription-start"] == "6"

    events = httpx.get(
        f"{service.fhir}/Subscription/{sid}/$events",
        params={"eventsSinceNumber": 2, "eventsUntilNumber": 4},
        headers=service.auth(),
        timeout=30,
    ).json()
    status = events["entry"][0]["resource"]
    numbers = [
        int(part["valueString"])
        for p in status["parameter"]
        if p["name"] == "notification-event"
        for part in p["part"]
        if part["name"] == "event-number"
    ]
    assert events["type"] == "history" and numbers == [2, 3, 4]

    # $resend: the same numbers again (a duplicate is detectable by its number)
    resp = httpx.post(
        f"{service.fhir}/Subscription/{sid}/$resend",
        params={"eventsSinceNumber": 5},
        headers=service.auth(),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    wait_for(lambda: len(receiver.numbers()) >= 8, what="the resent events")
    assert receiver.numbers()[6:] == [5, 6]


def test_receiver_outage_and_notifier_restart_lose_nothing(service: Any, receiver: Any) -> None:
    patient = f"p-{uuid.uuid4().hex[:8]}"
    sid = _create(
        service, subscription(receiver.url, criteria=f"CarePlan?patient={patient}", timeout=1)
    ).json()["id"]
    wait_for(lambda: _status(service, sid)["status"] == "active", what="status active")
    _progressed(service, patient, 3)
    wait_for(lambda: len(receiver.numbers()) == 3, what="three notifications")

    receiver.up = False  # the EHR is down
    _progressed(service, patient, 4)
    wait_for(lambda: _status(service, sid)["status"] == "error", what="status error after the timeout")
    stored = httpx.get(f"{service.fhir}/Subscription/{sid}", headers=service.auth(), timeout=30).json()
    assert stored["status"] == "error" and "HTTP 503" in stored["error"]
    delivery = httpx.get(
        f"{service.url}/subscriptions/{sid}/delivery", headers=service.auth(), timeout=30
    ).json()
    assert delivery["pending"] == 4 and delivery["failures"] > 0 and "HTTP 503" in delivery["lastError"]

    workers = service.app.state.workers
    workers.stop()  # the notifier and the sender go away while events keep coming
    _progressed(service, patient, 3)
    workers.start()
    assert workers.consumers[0].wait_until_assigned(60)
    receiver.up = True
    wait_for(lambda: len(receiver.numbers()) >= 10, timeout_s=60, what="every event after the outage")
    assert sorted(set(receiver.numbers())) == list(range(1, 11))
    wait_for(lambda: _status(service, sid)["status"] == "active", what="back to active")
    assert receiver.refused > 0


def test_patient_tokens_subscribe_to_their_own_data_only(service: Any, receiver: Any) -> None:
    me, other = f"p-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    owner = [
        {
            "url": f"{CANONICAL_URL}/StructureDefinition/subscription-patient",
            "valueReference": {"reference": f"Patient/{me}"},
        }
    ]
    scope = "patient/*.read patient/Subscription.write"
    theirs = subscription(receiver.url, criteria=f"CarePlan?patient=Patient/{other}", extension=owner)
    assert _create(service, theirs, scope=scope, patient=me).status_code == 403
    unfiltered = subscription(receiver.url, extension=owner)
    assert _create(service, unfiltered, scope=scope, patient=me).status_code == 403
    mine = subscription(receiver.url, criteria=f"CarePlan?patient=Patient/{me}", extension=owner)
    resp = _create(service, mine, scope=scope, patient=me)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    other_auth = service.auth(scope="patient/*.read", patient=other)
    assert httpx.get(f"{service.fhir}/Subscription/{sid}/$status", headers=other_auth).status_code == 404
    assert httpx.get(f"{service.fhir}/Subscription/{sid}", headers=other_auth).status_code == 404


def test_websocket_binding_handshake_and_events(service: Any) -> None:
    from starlette.testclient import TestClient

    patient = f"p-{uuid.uuid4().hex[:8]}"
    body = subscription(
        "", topic="session-logged", criteria=f"Encounter?patient={patient}", channel="websocket"
    )
    body["channel"].pop("endpoint")
    resp = _create(service, body)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    token = httpx.post(
        f"{service.fhir}/Subscription/{sid}/$get-ws-binding-token", headers=service.auth(), timeout=30
    ).json()
    value = next(p["valueString"] for p in token["parameter"] if p["name"] == "token")
    with TestClient(service.app) as client, client.websocket_connect("/subscriptions/ws") as ws:
        ws.send_text(f"bind-with-token {value}")
        handshake = ws.receive_json()
        assert _type(handshake) == "handshake"
        service.publish(
            "session.logged.v1", patient, {"session": "Encounter/e-1", "setting": "home", "exercises": []}
        )
        note = ws.receive_json()
        assert _type(note) == "event-notification"
    assert _status(service, sid)["status"] == "active"


def _type(bundle: dict[str, Any]) -> str:
    params = bundle["entry"][0]["resource"]["parameter"]
    return str(next(p["valueCode"] for p in params if p["name"] == "type"))


def test_fhirpy_creates_a_subscription_and_reads_its_status(service: Any, receiver: Any) -> None:
    token = service.auth()["Authorization"].removeprefix("Bearer ")
    client = SyncFHIRClient(service.fhir, authorization=f"Bearer {token}")
    sub = client.resource("Subscription", **subscription(receiver.url, topic="goal-achieved"))
    sub.save()
    assert sub.id
    status = client.execute(f"Subscription/{sub.id}/$status", method="get")
    params = status["entry"][0]["resource"]["parameter"]
    assert any(p["name"] == "status" for p in params)
    sub.refresh()
    wait_for(lambda: _status(service, str(sub.id))["status"] == "active", what="active")


def test_heartbeats_when_nothing_happens(service: Any, receiver: Any) -> None:
    body = subscription(receiver.url, criteria=f"CarePlan?patient=p-{uuid.uuid4().hex[:8]}", heartbeat=1)
    assert _create(service, body).status_code == 201
    wait_for(lambda: len(receiver.of_kind("heartbeat")) >= 2, what="two heartbeats")
    beat = receiver.of_kind("heartbeat")[0]
    assert beat.param("status") == "active" and beat.numbers == []


def test_the_secret_is_write_only(service: Any, receiver: Any) -> None:
    """Accepted on create and update, never returned (reads show it masked); $rotate-secret returns a new
    one once; notifications are signed with whichever is current."""
    patient = f"p-{uuid.uuid4().hex[:8]}"
    resp = _create(service, subscription(receiver.url, criteria=f"CarePlan?patient={patient}"))
    assert resp.status_code == 201, resp.text
    assert SECRET not in resp.text
    sid = resp.json()["id"]
    read = httpx.get(f"{service.fhir}/Subscription/{sid}", headers=service.auth(), timeout=30)
    assert SECRET not in read.text
    history = httpx.get(f"{service.fhir}/Subscription/{sid}/_history", headers=service.auth(), timeout=30)
    assert SECRET not in history.text
    searched = httpx.get(
        f"{service.fhir}/Subscription", params={"_id": sid}, headers=service.auth(), timeout=30
    )
    assert SECRET not in searched.text
    [masked] = [e for e in read.json()["extension"] if e["url"].endswith("subscription-secret")]
    assert masked["valueString"] == "********"
    wait_for(lambda: _status(service, sid)["status"] == "active", what="status active")

    def signed_with(secret: str, count: int) -> None:
        wait_for(lambda: len(receiver.numbers()) >= count, what=f"{count} notifications")
        note = receiver.of_kind("event-notification")[-1]
        expected = "sha256=" + hmac.new(secret.encode(), note.body, hashlib.sha256).hexdigest()
        assert note.headers["x-relearn-signature"] == expected

    _progressed(service, patient, 1)
    signed_with(SECRET, 1)
    # A client that reads, edits and writes back the resource sends the mask: the secret stays.
    body = read.json()
    body["reason"] = "edited"
    resp = httpx.put(f"{service.fhir}/Subscription/{sid}", json=body, headers=service.auth(), timeout=30)
    assert resp.status_code == 200, resp.text
    _progressed(service, patient, 1)
    signed_with(SECRET, 2)
    # A new secret on update is taken, and not shown either.
    body["extension"] = [e for e in body["extension"] if not e["url"].endswith("subscription-secret")]
    body["extension"].append(
        {
            "url": f"{CANONICAL_URL}/StructureDefinition/subscription-secret",
            "valueString": "another-long-secret-value",
        }
    )
    resp = httpx.put(f"{service.fhir}/Subscription/{sid}", json=body, headers=service.auth(), timeout=30)
    assert resp.status_code == 200 and "another-long-secret-value" not in resp.text
    _progressed(service, patient, 1)
    signed_with("another-long-secret-value", 3)
    # $rotate-secret: a server-made secret, returned this once.
    rotated = httpx.post(
        f"{service.fhir}/Subscription/{sid}/$rotate-secret", headers=service.auth(), timeout=30
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["parameter"][0]["valueString"]
    assert len(new_secret) >= 32
    read = httpx.get(f"{service.fhir}/Subscription/{sid}", headers=service.auth(), timeout=30)
    assert new_secret not in read.text
    _progressed(service, patient, 1)
    signed_with(new_secret, 4)
    reader = service.auth(scope="system/*.read")
    assert httpx.post(f"{service.fhir}/Subscription/{sid}/$rotate-secret", headers=reader).status_code == 403


def test_goal_achieved_comes_from_the_plan_events_goals(service: Any, receiver: Any) -> None:
    patient = f"p-{uuid.uuid4().hex[:8]}"
    body = subscription(receiver.url, topic="goal-achieved", criteria=f"Goal?patient={patient}")
    sid = _create(service, body).json()["id"]
    wait_for(lambda: _status(service, sid)["status"] == "active", what="status active")
    # Reason text alone raises nothing (the plan names the goals it marks achieved in goals[]).
    service.publish(
        "plan.updated.v1",
        patient,
        {"carePlan": f"CarePlan/cp-{patient}", "versionId": 5, "reason": "2 goal(s) achieved", "goals": []},
    )
    goals = [
        {
            "goal": "Goal/g-done",
            "versionId": 3,
            "lifecycleStatus": "completed",
            "achievementStatus": "achieved",
            "achieved": True,
        },
        {
            "goal": "Goal/g-open",
            "versionId": 2,
            "lifecycleStatus": "active",
            "achievementStatus": "improving",
            "achieved": False,
        },
    ]
    service.publish(
        "plan.updated.v1",
        patient,
        {"carePlan": f"CarePlan/cp-{patient}", "versionId": 6, "reason": "re-assessment", "goals": goals},
    )
    wait_for(lambda: len(receiver.numbers()) >= 1, what="the goal-achieved notification")
    note = receiver.of_kind("event-notification")[0]
    assert note.numbers == [1] and note.focuses[0].endswith("Goal/g-done")
    [entry] = note.bundle["entry"][1:]  # id-only: the focus's fullUrl and request, no resource
    assert entry["fullUrl"].endswith("/Goal/g-done") and "resource" not in entry
    assert entry["request"]["url"] == "Goal/g-done" and entry["response"]["etag"] == 'W/"3"'
    assert _status(service, sid)["events-since-subscription-start"] == "1"


def test_full_resource_without_a_credential_goes_id_only_saying_why(service: Any, receiver: Any) -> None:
    """This service has no client to read the focus with (no SUBSCRIPTIONS_FOCUS_CLIENT_ID): each entry goes
    id-only and the status says why (tests/test_subscriptions_front_door.py reads real ones)."""
    patient = f"p-{uuid.uuid4().hex[:8]}"
    body = subscription(receiver.url, criteria=f"CarePlan?patient={patient}", content="full-resource")
    resp = _create(service, body)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    wait_for(lambda: _status(service, sid)["status"] == "active", what="status active")
    _progressed(service, patient, 2)
    wait_for(lambda: len(receiver.numbers()) >= 2, what="two notifications")
    entries = [e for r in receiver.of_kind("event-notification") for e in r.bundle["entry"][1:]]
    assert [e["response"]["etag"] for e in entries] == ['W/"2"', 'W/"3"']  # the versions the events name
    assert all("resource" not in e and e["fullUrl"].endswith(f"CarePlan/cp-{patient}") for e in entries)
    errors = [
        p["valueCodeableConcept"]["text"]
        for r in receiver.of_kind("event-notification")
        for p in r.status["parameter"]
        if p["name"] == "error"
    ]
    assert errors and all("sent id-only" in e and "no credential" in e for e in errors)
