"""Facts the sessions service publishes, staged in the outbox in the transaction that stores them.

``session.logged.v1`` when a session (or home practice) is closed; ``session.symptoms-recorded.v1``
when its 24-hour response is recorded or corrected. Data: :mod:`relearn.sessions.outbound`
(docs/events.md). The patient is the subject, so one patient's events stay in order.
"""

from __future__ import annotations

from sqlmodel import Session

from relearn.sessions.outbound import (
    SESSION_LOGGED,
    SOURCE,
    SYMPTOMS_RECORDED,
    session_logged_data,
    symptoms_recorded_data,
)
from relearn.sessions.workflow import SessionState
from relearn.shared.events.envelope import CloudEvent
from relearn.shared.events.outbox import stage


def stage_session_logged(session: Session, state: SessionState) -> CloudEvent:
    event = CloudEvent.new(SOURCE, SESSION_LOGGED, state.patient, session_logged_data(state))
    stage(session, event)
    return event


def stage_symptoms_recorded(session: Session, state: SessionState) -> CloudEvent:
    event = CloudEvent.new(SOURCE, SYMPTOMS_RECORDED, state.patient, symptoms_recorded_data(state))
    stage(session, event)
    return event
