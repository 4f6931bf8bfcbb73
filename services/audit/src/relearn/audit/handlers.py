"""The audit topic's consumer handler: each audit.recorded.v1 becomes a stored AuditEvent."""

from __future__ import annotations

from sqlmodel import Session

from relearn.audit.events import AUDIT_RECORDED, decode
from relearn.audit.service import AuditLog
from relearn.shared.events import CloudEvent, Handler


def audit_handlers(log: AuditLog) -> dict[str, Handler]:
    def handle(session: Session, event: CloudEvent) -> None:
        log.record(session, decode(event))

    return {AUDIT_RECORDED: handle}
