"""Events over the real broker: the plan read model catching up from plan events (in order, stale
and replayed events ignored, unreadable ones dead-lettered), and session.logged.v1 /
session.symptoms-recorded.v1 published with the documented fields."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, TopicPartition
from sqlmodel import Session, func, select

from relearn.devtools.apps import wait_for
from relearn.shared.events import PLAN_EVENTS, SESSIONS_EVENTS, CloudEvent, ProcessedEvent, dlq

if TYPE_CHECKING:  # conftest is pytest's to import; its class is only named here for the types
    from conftest import SessionsService

PlanEvent = Callable[..., CloudEvent]


def _find_on_topic(bootstrap: str, topic: str, match: Callable[[Any], bool], timeout_s: float = 30.0) -> Any:
    """The first record of ``topic`` (read from the start, no consumer group) that ``match``es."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = wait_for(lambda: reader.partitions_for_topic(topic), what=f"{topic} to exist")
        reader.assign([TopicPartition(topic, p) for p in partitions])
        reader.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=200).values():
                for record in records:
                    if match(record):
                        return record
        raise AssertionError(f"no matching record on {topic} within {timeout_s}s")
    finally:
        reader.close()


def _start(service: SessionsService, patient: str, care_plan: str) -> Any:
    return service.client.post(
        "/sessions", json={"patient": patient, "carePlan": f"CarePlan/{care_plan}"}, headers=service.headers
    )


def test_the_read_model_follows_plan_events_in_version_order(
    service: SessionsService, make_plan_event: PlanEvent, plan_activities: list[dict[str, Any]]
) -> None:
    patient, care_plan = "p-readmodel", "cp-readmodel"
    drafted = make_plan_event("plan.drafted.v1", care_plan, patient, 1, activities=plan_activities)
    service.publish(drafted)
    wait_for(lambda: service.plan_row(care_plan), what="the drafted plan")
    resp = _start(service, patient, care_plan)
    assert resp.status_code == 422
    assert "is not active (status draft)" in resp.json()["issue"][0]["diagnostics"]

    stale = make_plan_event("plan.updated.v1", care_plan, patient, 2, status="revoked", activities=[])
    service.publish(
        make_plan_event("plan.activated.v1", care_plan, patient, 2, activities=plan_activities),
        make_plan_event(
            "plan.progressed.v1", care_plan, patient, 3, activity="knee-ext", dimension="motion", to=3
        ),
        stale,  # a late duplicate of an older version: changes nothing
    )
    wait_for(lambda: _processed(service, stale.id), what="the stale event to be consumed")
    row = service.plan_row(care_plan)
    assert row is not None
    assert (row.status, row.version, row.patient_id) == ("active", 3, patient)
    assert row.activities["knee-ext"]["level"]["motion"] == 3
    assert sorted(row.activities) == ["hip-abd", "knee-ext"]

    sid = _start(service, patient, care_plan).json()["id"]
    body = {
        "activity": "knee-ext",
        "sets": 1,
        "reps": [10],
        "assistance": "none",
        "quality": 4,
        "painBefore": 0,
        "painAfter": 0,
        "withFeedback": False,
    }
    recorded = service.client.post(f"/sessions/{sid}/exercises", json=body, headers=service.headers)
    assert recorded.json()["exercises"][0]["level"]["motion"] == 3, "the session uses the progressed level"

    # The plan is put on hold: a new exercise is refused, naming the plan.
    service.publish(
        make_plan_event(
            "plan.updated.v1", care_plan, patient, 4, status="on-hold", activities=plan_activities
        )
    )
    wait_for(
        lambda: (r := service.plan_row(care_plan)) is not None and r.status == "on-hold", what="the hold"
    )
    refused = service.client.post(f"/sessions/{sid}/exercises", json=body, headers=service.headers)
    assert refused.status_code == 422
    assert "not active (status on-hold)" in refused.json()["issue"][0]["diagnostics"]


def _processed(service: SessionsService, event_id: str | None = None) -> int:
    with Session(service.engine) as s:
        query = select(func.count()).select_from(ProcessedEvent)
        if event_id is not None:
            query = query.where(ProcessedEvent.event_id == event_id)
        return int(s.exec(query).one())


def test_a_replayed_event_is_applied_once_and_an_unreadable_one_is_dead_lettered(
    service: SessionsService, make_plan_event: PlanEvent, plan_activities: list[dict[str, Any]]
) -> None:
    patient, care_plan = "p-replay", "cp-replay"
    activated = make_plan_event("plan.activated.v1", care_plan, patient, 5, activities=plan_activities)
    unreadable = CloudEvent.new(
        "/relearn/plan", "plan.updated.v1", patient, {"versionId": 6, "patient": patient}
    )
    after = make_plan_event("plan.updated.v1", care_plan, patient, 7, status="completed")
    service.publish(activated, activated, unreadable, after)

    row = wait_for(
        lambda: (r := service.plan_row(care_plan)) is not None and r.status == "completed" and r,
        what="the event after the unreadable one",
    )
    assert row.version == 7
    assert _processed(service, activated.id) == 1
    assert _processed(service, unreadable.id) == 0
    dead = _find_on_topic(
        service.bootstrap, dlq(PLAN_EVENTS), lambda r: CloudEvent.from_bytes(r.value).id == unreadable.id
    )
    assert dict(dead.headers)["consumer_group"] == b"sessions"


def test_closing_a_session_publishes_session_logged_with_the_documented_fields(
    service: SessionsService,
) -> None:
    patient, care_plan = service.active_plan()
    sid = _start(service, patient, care_plan).json()["id"]
    exercise = {
        "activity": "hip-abd",
        "sets": 2,
        "reps": [12, 11],
        "loadKg": 1.0,
        "assistance": "moderate",
        "cues": ["mirror"],
        "level": {"proprioception": 1},
        "quality": 2,
        "selfRating": 3,
        "painBefore": 1,
        "painAfter": 4,
        "withFeedback": False,
        "retentionAttempt": True,
        "dualTask": True,
        "dualTaskTrial": {
            "measure": "sway-area",
            "single": 5.0,
            "dual": 6.0,
            "unit": "cm2",
            "lowerIsBetter": True,
        },
        "rom": {"valueDeg": 40, "method": "device"},
        "deviceStreams": ["balance-01", "emg-02"],
        "start": "2026-01-05T09:10:00+00:00",
        "end": "2026-01-05T09:20:00+00:00",
    }
    recorded = service.client.post(
        f"/sessions/{sid}/exercises", json=exercise, headers=service.headers
    ).json()
    procedure = recorded["exercises"][0]["procedure"]
    rom_observation = recorded["exercises"][0]["rom"]["observation"]
    service.client.post(f"/sessions/{sid}/close", headers=service.headers)

    record = _find_on_topic(
        service.bootstrap,
        SESSIONS_EVENTS,
        lambda r: CloudEvent.from_bytes(r.value).data.get("session") == f"Encounter/{sid}",
    )
    event = CloudEvent.from_bytes(record.value)
    assert record.key == patient.encode()
    assert (event.type, event.source, event.subject) == ("session.logged.v1", "/relearn/sessions", patient)
    data = event.data
    assert (data["patient"], data["setting"], data["carePlan"]) == (
        patient,
        "clinic",
        f"CarePlan/{care_plan}",
    )
    assert data["start"] and data["end"]
    assert (data["session"], data["sessionId"], data["encounter"]) == (
        f"Encounter/{sid}",
        sid,
        f"Encounter/{sid}",
    )
    (logged,) = data["exercises"]
    assert logged == {
        "procedure": procedure,
        "activity": "hip-abd",
        "pattern": "hip-abduction-side-lying",
        "level": {
            "joints": 0,
            "motion": 0,
            "loadBearing": 1,
            "proprioception": 1,
            "resistance": 0,
            "tempo": 0,
        },
        "sets": 2,
        "reps": [12, 11],
        "targetReps": 12,
        "loadKg": 1.0,
        "assistance": "moderate",
        "cues": ["mirror"],
        "withFeedback": False,
        "retentionAttempt": True,
        "dualTask": True,
        "dualTaskTrial": {
            "measure": "sway-area",
            "single": 5.0,
            "dual": 6.0,
            "unit": "cm2",
            "lowerIsBetter": True,
        },
        "dualTaskCostPct": 20.0,  # computed: 20 % more sway under the dual task
        "rom": {"valueDeg": 40.0, "method": "device", "motion": None, "observation": rom_observation},
        "quality": 2,
        "selfRating": 3,
        "painBefore": 1,
        "painAfter": 4,
        "deviceStreams": ["balance-01", "emg-02"],
        "start": "2026-01-05T09:10:00+00:00",
        "end": "2026-01-05T09:20:00+00:00",
    }

    resp = service.client.post(
        f"/sessions/{sid}/symptoms",
        json={"pain24h": 5, "flare": True, "notes": "sore"},
        headers=service.headers,
    )
    assert resp.status_code == 201
    record = _find_on_topic(
        service.bootstrap,
        SESSIONS_EVENTS,
        lambda r: (
            (e := CloudEvent.from_bytes(r.value)).type == "session.symptoms-recorded.v1"
            and e.data["session"] == f"Encounter/{sid}"
        ),
    )
    symptoms = CloudEvent.from_bytes(record.value).data
    assert {k: v for k, v in symptoms.items() if k != "recordedAt"} == {
        "session": f"Encounter/{sid}",
        "sessionId": sid,
        "patient": patient,
        "pain24h": 5,
        "flare": True,
        "notes": "sore",
    }
