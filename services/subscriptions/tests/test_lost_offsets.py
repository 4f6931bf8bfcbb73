"""A broker that loses its logs and committed offsets (Tansu's memory engine restarted): the notifier must not
wait for offsets that no longer exist. It starts the new log from its earliest record, and an event it had
numbered already is known by its event id (no second number)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaProducer

from relearn.devtools.apps import wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import PLAN_EVENTS, CloudEvent, producer_config
from relearn.shared.fhir import CANONICAL_URL

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"


@pytest.fixture
def forgetful(tmp_path: Path) -> Iterator[TansuBroker]:
    broker = TansuBroker(log_dir=tmp_path / "memory-broker")  # the memory engine: a restart forgets all
    broker.start()
    yield broker
    broker.stop()


def _numbered(service: Any, sid: str) -> int:
    status = httpx.get(
        f"{service.fhir}/Subscription/{sid}/$status", headers=service.auth(), timeout=10
    ).json()
    params = status["entry"][0]["resource"]["parameter"]
    return int(next(p["valueString"] for p in params if p["name"] == "events-since-subscription-start"))


def test_the_notifier_goes_on_when_the_broker_forgot_its_offsets(
    forgetful: TansuBroker,
    pg_database: Callable[[str], str],
    tmp_path: Path,
    receiver: Any,
    start_service: Callable[..., Any],
) -> None:
    database = pg_database("subscriptions_offsets")
    with start_service(forgetful.bootstrap, database, tmp_path / "keys") as service:
        patient = f"p-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "lost offsets",
            "criteria": f"{CANONICAL_URL}/SubscriptionTopic/plan-progressed",
            "_criteria": {
                "extension": [
                    {
                        "url": f"{BACKPORT}/backport-filter-criteria",
                        "valueString": f"CarePlan?patient={patient}",
                    }
                ]
            },
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
        }
        resp = httpx.post(f"{service.fhir}/Subscription", json=body, headers=service.auth(), timeout=30)
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        sent = []
        for i in range(6):
            sent.append(
                service.publish(
                    "plan.progressed.v1",
                    patient,
                    {"carePlan": f"CarePlan/cp-{patient}", "versionId": i + 2, "kind": "advance"},
                )
            )
        wait_for(lambda: _numbered(service, sid) == 6, timeout_s=60, what="six events numbered")

        forgetful.restart()  # the log and the group's committed offsets are gone; the notifier is at 6
        # Fewer records than the notifier's position (it would wait for offset 6 for ever), one of them an
        # event it numbered before the restart (a producer's retry): known by its id, not numbered again.
        # A new producer: the broker forgot the old one's producer id too.
        producer = KafkaProducer(
            **producer_config(forgetful.bootstrap, f"after-restart-{uuid.uuid4().hex[:6]}")
        )
        later = [sent[-1]]
        for i in range(6, 9):
            later.append(
                CloudEvent.new(
                    "/relearn/test",
                    "plan.progressed.v1",
                    patient,
                    {
                        "patient": patient,
                        "carePlan": f"CarePlan/cp-{patient}",
                        "versionId": i + 2,
                        "kind": "advance",
                    },
                )
            )
        try:
            for event in later:
                producer.send(PLAN_EVENTS, key=event.key, value=event.to_bytes()).get(timeout=30)
        finally:
            producer.close()
        wait_for(lambda: _numbered(service, sid) >= 9, timeout_s=240, what="the events after the restart")
        wait_for(
            lambda: set(receiver.numbers()) >= set(range(1, 10)), timeout_s=60, what="every notification"
        )
        assert _numbered(service, sid) == 9  # the replayed event got no second number
        assert sorted(set(receiver.numbers())) == list(range(1, 10))
