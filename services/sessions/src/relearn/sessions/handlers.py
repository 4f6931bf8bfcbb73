"""Consumer handlers: plan events keep the read model of care plans current."""

from __future__ import annotations

from sqlmodel import Session

from relearn.sessions import service
from relearn.shared.events import CloudEvent


def on_plan_event(session: Session, event: CloudEvent) -> None:
    """Every plan event (``plan_view.PLAN_EVENT_TYPES``): applied to the plan's row of the read model."""
    service.apply_plan(session, event.type, event.id, event.data, at=event.time)
