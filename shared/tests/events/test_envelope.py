from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relearn.shared.events.envelope import CloudEvent, InvalidEvent
from relearn.shared.events.topics import all_topics, dlq, topic_for


def test_envelope_round_trips_with_cloudevents_attributes() -> None:
    event = CloudEvent.new("/relearn/evaluation", "evaluation.completed.v1", "patient-1", {"deficits": [1.5]})
    back = CloudEvent.from_bytes(event.to_bytes())
    assert back == event
    assert back.specversion == "1.0"
    assert back.time.tzinfo is not None
    assert back.key == b"patient-1"


def test_event_time_is_always_utc() -> None:
    raw = b'{"source":"/x","type":"session.logged.v1","subject":"p","time":"2026-11-20T12:00:00+02:00"}'
    event = CloudEvent.from_bytes(raw)
    assert event.time == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert event.time.utcoffset() == timedelta(0)
    assert event.specversion == "1.0" and event.datacontenttype == "application/json" and event.id


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"specversion":"1.0","source":"/x","type":"evaluation.completed.v1"}',  # no subject
        b'{"specversion":"0.3","source":"/x","type":"a.b.v1","subject":"p"}',
        b'{"specversion":"1.0","source":"/x","type":"NotPastTense","subject":"p"}',
    ],
)
def test_bad_bytes_are_rejected_as_invalid_events(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        CloudEvent.from_bytes(raw)


def test_every_event_type_has_one_topic_and_every_topic_a_dlq() -> None:
    assert topic_for("plan.progressed.v1") == "relearn.plan.events"
    names = {t.name for t in all_topics()}
    for t in list(names):
        if not t.endswith(".dlq"):
            assert dlq(t) in names
    with pytest.raises(KeyError):
        topic_for("something.unknown.v1")
