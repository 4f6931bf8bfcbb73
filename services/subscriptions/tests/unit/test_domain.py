"""The topics' triggers and the Subscription parser: pure rules, no database or broker."""

from __future__ import annotations

from typing import Any

import pytest

from relearn.shared.fhir import InvalidResource
from relearn.subscriptions.domain.backoff import retry_delay
from relearn.subscriptions.domain.subscription import BACKPORT, parse
from relearn.subscriptions.domain.topics import TOPIC_BASE, TOPICS, triggers


def _topics(event_type: str, data: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t in triggers(event_type, "pat-1", {"patient": "pat-1", **data}):
        out.setdefault(t.topic.rsplit("/", 1)[1], []).append(t.focus)
    return out


def test_every_topic_names_event_types_the_platform_declares() -> None:
    from relearn.shared.events import topic_for

    for topic in TOPICS:
        for event_type in topic.event_types:
            assert topic_for(event_type)
        assert {f.name for f in topic.filters} >= {"patient"}


def test_plan_events_raise_their_topics_and_tasks() -> None:
    progressed = {"carePlan": "CarePlan/cp", "kind": "regress", "pattern": "sit-to-stand", "task": "Task/t1"}
    assert _topics("plan.progressed.v1", progressed) == {
        "plan-progressed": ["CarePlan/cp"],
        "therapist-task-raised": ["Task/t1"],
    }
    assert _topics("plan.activated.v1", {"carePlan": "CarePlan/cp", "activities": []}) == {
        "plan-activated": ["CarePlan/cp"]
    }
    assert _topics("plan.stage-changed.v1", {"carePlan": "CarePlan/cp", "stage": "autonomous"}) == {
        "competence-stage-changed": ["CarePlan/cp"]
    }
    updated = {"carePlan": "CarePlan/cp", "tasks": ["Task/a", "Task/b"], "reason": "hold"}
    assert _topics("plan.updated.v1", updated) == {"therapist-task-raised": ["Task/a", "Task/b"]}
    assert _topics("plan.drafted.v1", {"carePlan": "CarePlan/cp"}) == {}


def test_goal_achieved_from_the_plan_events_goals_not_the_reason() -> None:
    goals = [
        {
            "goal": "Goal/g1",
            "versionId": 3,
            "lifecycleStatus": "completed",
            "achievementStatus": "achieved",
            "achieved": True,
        },
        {
            "goal": "Goal/g2",
            "versionId": 2,
            "lifecycleStatus": "completed",
            "achievementStatus": "achieved",
            "achieved": False,
        },  # achieved before: not again
        {
            "goal": "Goal/g3",
            "versionId": 1,
            "lifecycleStatus": "active",
            "achievementStatus": "improving",
            "achieved": False,
        },
    ]
    data = {"carePlan": "CarePlan/cp", "versionId": 7, "goals": goals, "reason": "2 goal(s) achieved"}
    assert _topics("plan.updated.v1", data) == {"goal-achieved": ["Goal/g1"]}
    [t] = triggers("plan.updated.v1", "pat-1", data)
    assert t.version == "3"  # the Goal version the plan wrote, not the CarePlan's
    counted = {"carePlan": "CarePlan/cp", "reason": "re-assessment: 1 new goal(s), 2 goal(s) achieved"}
    assert _topics("plan.updated.v1", counted) == {}  # reason text is never read
    [p] = triggers(
        "plan.progressed.v1", "pat-1", {"carePlan": "CarePlan/cp", "versionId": 4, "kind": "advance"}
    )
    assert p.version == "4"


def test_filters_match_patient_pattern_stage_category() -> None:
    [t] = triggers(
        "plan.progressed.v1",
        "pat-1",
        {"carePlan": "CarePlan/cp", "kind": "advance", "pattern": "squat", "stage": "associative"},
    )
    assert t.matches({"patient": "Patient/pat-1", "category": "advance", "pattern": "squat"})
    assert t.matches({"stage": "associative"})
    assert not t.matches({"patient": "Patient/pat-2"})
    assert not t.matches({"category": "regress"})


def test_device_metric_focus_is_the_observation_the_event_names() -> None:
    data = {
        "device": "dev-1",
        "metric": "emg-rms",
        "channel": "vastus-medialis-left",
        "window": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:00:01Z"},
    }
    named = {"patient": "pat-1", **data, "observation": "Observation/0b6c5a1e-obs"}
    [t] = triggers("device.metric-computed.v1", "pat-1", named)
    assert t.focus == "Observation/0b6c5a1e-obs"
    assert t.matches({"category": "emg-rms"})
    # An older event that names no Observation notifies nobody (there is no focus to point at).
    assert triggers("device.metric-computed.v1", "pat-1", {"patient": "pat-1", **data}) == []


def test_a_trial_summary_notifies_once_with_its_observation() -> None:
    data = {
        "patient": "pat-1",
        "device": "emg-1",
        "stream": "st-1",
        "metric": "emg-rms",
        "trial": {"start": "2026-12-01T10:00:00Z", "end": "2026-12-01T10:00:30Z"},
        "observation": "Observation/trial-rms",
        "results": [{"channel": "ch1", "value": 12.5, "unit": "uV", "status": "measured"}],
    }
    [t] = triggers("device.trial-summarized.v1", "pat-1", data)
    assert t.focus == "Observation/trial-rms" and t.matches({"category": "emg-rms"})


def _sub(**channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "criteria": f"{TOPIC_BASE}/session-logged",
        "_criteria": {
            "extension": [
                {
                    "url": f"{BACKPORT}/backport-filter-criteria",
                    "valueString": "Encounter?patient=p1&category=home",
                }
            ]
        },
        "channel": {"type": "rest-hook", "endpoint": "https://ehr.example.org/hook", **channel},
    }


def test_parse_reads_the_backport_elements() -> None:
    spec = parse(
        _sub(
            header=["X-Api-Key: k"],
            extension=[
                {"url": f"{BACKPORT}/backport-heartbeat-period", "valueUnsignedInt": 30},
                {"url": f"{BACKPORT}/backport-max-count", "valuePositiveInt": 5},
            ],
        ),
        allow_http=False,
    )
    assert spec.filters == {"patient": "Patient/p1", "category": "home"}
    assert spec.headers == (("X-Api-Key", "k"),)
    assert (spec.heartbeat_s, spec.max_count, spec.timeout_s, spec.payload) == (30, 5, 60, "empty")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"endpoint": "http://ehr.example.org/hook"}, "http://ehr.example.org/hook"),
        ({"type": "message"}, "message"),
        ({"header": ["no colon"]}, "header"),
        ({"extension": [{"url": f"{BACKPORT}/backport-timeout", "valueUnsignedInt": 0}]}, "timeout"),
    ],
)
def test_parse_refuses_naming_what(change: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidResource) as err:
        parse(_sub(**change), allow_http=False)
    assert named in str(err.value) or named in str(err.value.issues[0].expression)


def test_retry_delays_grow_to_the_cap_with_jitter() -> None:
    import random

    rng = random.Random(1)
    delays = [retry_delay(n, base_s=0.5, cap_s=30, rng=rng) for n in range(1, 40)]
    assert all(0.25 <= d <= 30 for d in delays)
    assert max(delays[10:]) > 5  # grows


def test_the_focus_version_at_an_events_time() -> None:
    from datetime import UTC, datetime

    from relearn.subscriptions.service.focus import FocusReader

    def version(v: int, at: str) -> dict[str, Any]:
        return {"resource": {"resourceType": "Encounter", "meta": {"versionId": str(v), "lastUpdated": at}}}

    history = {
        "entry": [
            version(3, "2026-01-03T00:00:00Z"),
            version(2, "2026-01-02T00:00:00Z"),
            {"request": {"method": "DELETE"}},
            version(1, "2026-01-01T00:00:00Z"),
        ]
    }

    def at(day: int) -> str | None:
        found = FocusReader._as_of("Encounter/e", history, datetime(2026, 1, day, 12, tzinfo=UTC))
        return found.resource["meta"]["versionId"] if found.resource else None

    assert at(2) == "2"  # a later update does not leak into an earlier event
    assert at(5) == "3"
    assert FocusReader._as_of("Encounter/e", history, datetime(2025, 1, 1, tzinfo=UTC)).resource is not None
