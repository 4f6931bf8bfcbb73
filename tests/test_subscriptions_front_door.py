"""Subscriptions at the one base URL: the front door routes Subscription, its operations, the topics and the
websocket binding socket to the subscriptions service (the platform as ``make run`` starts it)."""

from __future__ import annotations

import json
import uuid

import httpx
from websockets.sync.client import connect

from relearn.devtools.apps import wait_for
from relearn.devtools.journey import Journey, PlatformUrls
from relearn.devtools.platform import Platform
from relearn.shared.fhir import CANONICAL_URL

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


def test_a_websocket_subscription_through_the_front_door(running_platform: Platform) -> None:
    base = running_platform.settings.fhir_base_url
    auth = {"Authorization": f"Bearer {running_platform.token()}"}
    meta = httpx.get(f"{base}/metadata", timeout=30).json()
    sub_entry = next(r for r in meta["rest"][0]["resource"] if r["type"] == "Subscription")
    assert len(sub_entry["extension"]) == 8  # the topic canonicals survive the merge
    assert sub_entry["profile"] == f"{BACKPORT}/backport-subscription"
    assert f"{BACKPORT}/backport-subscription" in sub_entry.get("supportedProfile", [])
    topics = httpx.get(f"{base}/Basic", params={"code": "SubscriptionTopic"}, headers=auth, timeout=30).json()
    assert topics["total"] == 8

    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "front door",
        "criteria": f"{CANONICAL_URL}/SubscriptionTopic/plan-activated",
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": f"CarePlan?patient=p-{uuid.uuid4().hex[:6]}",
                }
            ]
        },
        "channel": {
            "type": "websocket",
            "extension": [{"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 1}],
        },
    }
    resp = httpx.post(f"{base}/Subscription", json=body, headers=auth, timeout=30)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["id"]
    token = httpx.post(f"{base}/Subscription/{sid}/$get-ws-binding-token", headers=auth, timeout=30).json()
    params = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in token["parameter"]}
    door = (
        f"ws://{running_platform.settings.host}:{running_platform.settings.front_door_port}/subscriptions/ws"
    )
    assert params["websocket-url"] == door
    with connect(door, open_timeout=30) as ws:
        ws.send(f"bind-with-token {params['token']}")
        kinds = []
        for _ in range(2):  # the handshake, then a heartbeat
            bundle = json.loads(ws.recv(timeout=30))
            status = bundle["entry"][0]["resource"]["parameter"]
            kinds.append(next(p["valueCode"] for p in status if p["name"] == "type"))
    assert kinds == ["handshake", "heartbeat"]

    def active() -> bool:
        status = httpx.get(f"{base}/Subscription/{sid}/$status", headers=auth, timeout=30).json()
        params = status["entry"][0]["resource"]["parameter"]
        return any(p["name"] == "status" and p["valueCode"] == "active" for p in params)

    wait_for(active, what="the subscription active")


def test_full_resource_notifications_carry_the_focus_version_of_the_event(running_platform: Platform) -> None:
    """full-resource: the subscriptions service reads the CarePlan the event was about through the front door
    with its own token, at send time; a later version of the plan does not leak into the notification."""
    settings = running_platform.settings
    base = settings.fhir_base_url
    auth = {"Authorization": f"Bearer {running_platform.token()}"}
    with Journey(PlatformUrls.from_settings(settings), timeout_s=60, with_devices=False) as journey:
        body = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "full resource",
            "criteria": f"{CANONICAL_URL}/SubscriptionTopic/plan-activated",
            "_criteria": {
                "extension": [
                    {
                        "url": f"{BACKPORT}/backport-filter-criteria",
                        "valueString": f"CarePlan?patient=Patient/{journey.patient}",
                    }
                ]
            },
            "channel": {
                "type": "websocket",
                "payload": "application/fhir+json",
                "_payload": {
                    "extension": [
                        {"url": f"{BACKPORT}/backport-payload-content", "valueCode": "full-resource"}
                    ]
                },
            },
        }
        resp = httpx.post(f"{base}/Subscription", json=body, headers=auth, timeout=30)
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        journey.initial_evaluation()
        journey.review_and_activate()
        plan_id = journey.plan_id
        activated = httpx.get(f"{base}/CarePlan/{plan_id}", headers=auth, timeout=30).json()
        assert activated["status"] == "active"
        version = activated["meta"]["versionId"]

        def numbered() -> bool:
            status = httpx.get(f"{base}/Subscription/{sid}/$status", headers=auth, timeout=30).json()
            params = status["entry"][0]["resource"]["parameter"]
            return any(
                p["name"] == "events-since-subscription-start" and p["valueString"] == "1" for p in params
            )

        wait_for(numbered, timeout_s=60, what="the activation numbered")
        # A later version (the plan put on hold) before the notification is sent (no socket bound yet).
        held = httpx.put(
            f"{journey.urls.plan}/plans/{plan_id}/status",
            json={"status": "on-hold", "reason": "a later version"},
            headers=auth,
            timeout=30,
        )
        assert held.status_code == 200, held.text
        current = httpx.get(f"{base}/CarePlan/{plan_id}", headers=auth, timeout=30).json()
        assert current["status"] == "on-hold" and current["meta"]["versionId"] != version

        token = httpx.post(
            f"{base}/Subscription/{sid}/$get-ws-binding-token", headers=auth, timeout=30
        ).json()
        params = {
            p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in token["parameter"]
        }
        door = f"ws://{settings.host}:{settings.front_door_port}/subscriptions/ws"
        with connect(door, open_timeout=30) as ws:
            ws.send(f"bind-with-token {params['token']}")
            bundles = [json.loads(ws.recv(timeout=60)) for _ in range(2)]  # the handshake, the activation
    note = bundles[1]
    status = note["entry"][0]["resource"]
    assert next(p["valueCode"] for p in status["parameter"] if p["name"] == "type") == "event-notification"
    assert not [p for p in status["parameter"] if p["name"] == "error"]
    [entry] = note["entry"][1:]
    assert entry["fullUrl"] == f"{base}/CarePlan/{plan_id}"
    assert entry["resource"]["resourceType"] == "CarePlan"
    assert entry["resource"]["meta"]["versionId"] == version  # the version the event was about
    assert entry["resource"]["status"] == "active"  # not the later on-hold
    assert entry["response"]["etag"] == f'W/"{version}"'
