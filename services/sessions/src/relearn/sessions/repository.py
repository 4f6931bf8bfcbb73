"""Every query of the sessions service: the session log, the plan read model, the FHIR view's writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from relearn.sessions.domain.plan_view import ActivityView, PlanView
from relearn.sessions.domain.session import SessionState
from relearn.sessions.tables import PlanRecord, PlanVersionRecord, SessionRecord
from relearn.shared.fhir import FhirStore, NotFound, ResourceDefinition


# -- the session log ----------------------------------------------------------------------------------------
def add_session(session: Session, state: SessionState) -> None:
    session.add(
        SessionRecord(
            id=state.id,
            patient_id=state.patient,
            care_plan_id=state.care_plan.removeprefix("CarePlan/"),
            setting=state.setting,
            status=state.status,
            started_at=state.start,
            ended_at=state.end,
            state=state.model_dump_json(),
        )
    )


def _row(session: Session, session_id: str, *, for_update: bool) -> SessionRecord | None:
    query = select(SessionRecord).where(SessionRecord.id == session_id)
    # FOR UPDATE: two requests on the same session (two exercises at once) take turns, so neither
    # overwrites the other's exercise (SQLite serialises writers anyway).
    return session.exec(query.with_for_update() if for_update else query).first()


def load_session(
    session: Session, session_id: str, *, patient: str | None = None, for_update: bool = False
) -> SessionState:
    """The session ``session_id``; 404 if unknown or, with ``patient``, if it is another patient's."""
    row = _row(session, session_id, for_update=for_update)
    if row is None or (patient is not None and row.patient_id != patient):
        raise NotFound(f"Session {session_id} is not known")
    return SessionState.model_validate_json(row.state)


def save_session(session: Session, state: SessionState) -> None:
    """Store the new state of a session loaded with ``for_update``."""
    row = session.get(SessionRecord, state.id)  # from the identity map: loaded just before
    if row is None:
        raise NotFound(f"Session {state.id} is not known")
    row.status = state.status
    row.started_at = state.start
    row.ended_at = state.end
    row.state = state.model_dump_json()
    row.updated_at = datetime.now(UTC)
    session.add(row)


def closed_sessions(
    session: Session, patient: str, start_from: datetime, start_to: datetime
) -> list[SessionState]:
    """The patient's finished sessions whose start (UTC) lies in ``[start_from, start_to)``."""
    rows = session.exec(
        select(SessionRecord.state)
        .where(
            SessionRecord.patient_id == patient,
            SessionRecord.status == "finished",
            col(SessionRecord.started_at) >= start_from,
            col(SessionRecord.started_at) < start_to,
        )
        .order_by(col(SessionRecord.started_at))
    ).all()
    return [SessionState.model_validate_json(text) for text in rows]


# -- the read model of care plans ---------------------------------------------------------------------------
def care_plan_id(reference: str) -> str:
    """``CarePlan/<id>`` or ``<id>`` -> ``<id>``."""
    return reference.removeprefix("CarePlan/")


def load_plan(session: Session, care_plan: str, *, for_update: bool = False) -> PlanView | None:
    """The view of ``care_plan`` (a reference or an id), or None if no event named it yet."""
    if for_update:
        query = select(PlanRecord).where(PlanRecord.care_plan_id == care_plan_id(care_plan))
        row = session.exec(query.with_for_update()).first()
    else:
        row = session.get(PlanRecord, care_plan_id(care_plan))
    return row.view() if row is not None else None


def plans_of_patient(session: Session, patient: str) -> list[PlanView]:
    rows = session.exec(
        select(PlanRecord).where(PlanRecord.patient_id == patient).order_by(col(PlanRecord.care_plan_id))
    ).all()
    return [r.view() for r in rows]


def save_plan(session: Session, care_plan: str, view: PlanView, *, event_id: str) -> None:
    """Store ``view`` as the row of ``care_plan`` (loaded with ``for_update`` when it exists)."""
    pid = care_plan_id(care_plan)
    row = session.get(PlanRecord, pid)  # from the identity map when it was loaded just before
    if row is None:
        row = PlanRecord(
            care_plan_id=pid,
            patient_id=view.patient,
            status=view.status,
            version=view.version,
            last_event_id=event_id,
        )
    row.patient_id = view.patient
    row.status = view.status
    row.version = view.version
    row.activities = {k: a.model_dump(mode="json") for k, a in view.activities.items()}
    row.last_event_id = event_id
    row.updated_at = datetime.now(UTC)
    session.add(row)


def add_plan_version(session: Session, view: PlanView, *, effective_at: datetime) -> None:
    """Keep ``view`` as the version ``view.version`` of its plan, in force from ``effective_at``."""
    pid = care_plan_id(view.care_plan)
    if session.get(PlanVersionRecord, (pid, view.version)) is not None:
        return
    session.add(
        PlanVersionRecord(
            care_plan_id=pid,
            version=view.version,
            patient_id=view.patient,
            status=view.status,
            effective_at=effective_at.astimezone(UTC),
            activities={k: a.model_dump(mode="json") for k, a in view.activities.items()},
        )
    )


def plan_versions(session: Session, care_plan: str) -> list[tuple[datetime, PlanView]]:
    """Every accepted version of ``care_plan``, oldest first, with when it took effect (UTC)."""
    rows = session.exec(
        select(PlanVersionRecord)
        .where(PlanVersionRecord.care_plan_id == care_plan_id(care_plan))
        .order_by(col(PlanVersionRecord.version))
    ).all()
    return [
        (
            r.effective_at if r.effective_at.tzinfo else r.effective_at.replace(tzinfo=UTC),
            PlanView(
                care_plan=f"CarePlan/{r.care_plan_id}",
                patient=r.patient_id,
                status=r.status,
                version=r.version,
                activities={k: ActivityView.model_validate(v) for k, v in r.activities.items()},
            ),
        )
        for r in rows
    ]


# -- the FHIR view ------------------------------------------------------------------------------------------
def put_resource(
    session: Session, store: FhirStore, rdef: ResourceDefinition, resource: dict[str, Any]
) -> None:
    """Create or update ``resource``; a new version only when its content changed."""
    rid = str(resource["id"])
    current = store.get(session, rdef.type, rid)
    if current is None:
        store.create(session, rdef, resource, id=rid)
    elif current.deleted or not _same_content(current.text, resource):
        store.update(session, rdef, rid, resource)


def _same_content(stored_text: str, resource: dict[str, Any]) -> bool:
    stored = json.loads(stored_text)
    stored.pop("meta", None)
    fresh = json.loads(json.dumps(resource))
    fresh.pop("meta", None)
    return bool(stored == fresh)
