"""The sessions service's read model of care plans, built from the plan service's events."""

# Sessions are validated against this local copy instead of calling the plan service on every
# request. Each plan event carries the CarePlan's ``versionId``; an event whose version is not
# newer than the view's is ignored, so a replay or a late duplicate changes nothing. That needs
# the plan service to give every event it emits for a plan a higher ``versionId`` than the last.
#
# Event data read here (docs/events.md), unknown fields ignored:
# ``plan.drafted/activated/updated.v1`` carry a snapshot: ``{carePlan, versionId, patient, status?,
# activities: [{id, pattern, level, dose, status?, stage?, cpt?}]}``; ``plan.progressed.v1`` moves one
# activity along one dimension (``activity, dimension, from, to``); ``plan.stage-changed.v1`` gives an
# activity's competence ``stage``.
#
# ``dose`` is read leniently: ``sets``, ``reps`` (a number or one per set), ``loadKg`` and the weekly
# frequency as ``frequencyPerWeek`` (or ``timesPerWeek``), or as a FHIR Timing ``repeat`` with
# ``frequency``/``period``/``periodUnit`` (directly or under ``timing``).

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relearn.sessions.domain.codes import DIMENSIONS
from relearn.shared.fhir import UnprocessableEntity

SNAPSHOT_EVENTS: dict[str, str | None] = {
    "plan.drafted.v1": "draft",
    "plan.activated.v1": "active",
    "plan.updated.v1": None,  # keeps the status unless the event states one
    "plan.discharged.v1": "completed",
}
PROGRESSED = "plan.progressed.v1"
STAGE_CHANGED = "plan.stage-changed.v1"
PLAN_EVENT_TYPES: tuple[str, ...] = (*SNAPSHOT_EVENTS, PROGRESSED, STAGE_CHANGED)

# Activity statuses (ServiceRequest.status) under which nothing more may be logged against it.
STOPPED_STATUSES = frozenset({"revoked", "completed", "entered-in-error", "on-hold"})
_STOPPED = STOPPED_STATUSES

# Per week, for a FHIR Timing periodUnit.
_PER_WEEK = {"d": 7.0, "wk": 1.0, "mo": 12 / 52.1775, "a": 1 / 52.1775}


class Dose(BaseModel):
    model_config = ConfigDict(frozen=True)

    sets: int | None = None
    reps: int | None = None
    load_kg: float | None = None
    frequency_per_week: float | None = None


class ActivityView(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    pattern: str
    level: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(DIMENSIONS, 0))
    dose: Dose = Field(default_factory=Dose)
    status: str | None = None
    stage: str | None = None
    # The CPT code of the activity's current form, as the plan service decided it (97110, 97112, 97530);
    # None from plan events that predate it.
    cpt: str | None = None


class PlanView(BaseModel):
    """One care plan as the sessions service knows it."""

    model_config = ConfigDict(frozen=True)

    care_plan: str = Field(description="CarePlan/<id>")
    patient: str
    status: str = Field(description="draft | active | on-hold | revoked | completed | unknown (not seen yet)")
    version: int
    activities: dict[str, ActivityView] = Field(default_factory=dict)


class _ActivityData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    level: dict[str, Any] = Field(default_factory=dict)
    dose: dict[str, Any] | None = None
    status: str | None = None
    stage: str | None = None
    cpt: str | None = Field(default=None, pattern=r"^\d{4}[0-9A-Z]$")


class PlanEventData(BaseModel):
    """The fields of plan event data this service reads (its own model: services never import each other)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    care_plan: str = Field(alias="carePlan", min_length=1)
    version_id: int = Field(alias="versionId", ge=0)
    patient: str = Field(min_length=1)
    status: str | None = None
    activities: list[_ActivityData] | None = None
    activity: str | None = None
    pattern: str | None = None
    dimension: str | None = None
    to: int | str | None = None
    stage: str | None = None


def _ref(value: str, rtype: str) -> str:
    return value if value.startswith(f"{rtype}/") else f"{rtype}/{value}"


def _dimension(name: str) -> str:
    key = name.replace("-", "").replace("_", "").lower()
    for dim in DIMENSIONS:
        if dim.lower() == key:
            return dim
    raise ValueError(f"unknown progression dimension {name!r} (expected one of {', '.join(DIMENSIONS)})")


def _level(raw: Mapping[str, Any], base: Mapping[str, int] | None = None) -> dict[str, int]:
    level = dict(base) if base is not None else dict.fromkeys(DIMENSIONS, 0)
    for name, value in raw.items():
        level[_dimension(name)] = int(value)
    return level


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return float(max(value))
    return None


def _frequency_per_week(raw: Mapping[str, Any]) -> float | None:
    for key in ("frequencyPerWeek", "timesPerWeek"):
        if (n := _number(raw.get(key))) is not None:
            return n
    timing = raw.get("timing")
    repeat: Any = timing.get("repeat", timing) if isinstance(timing, Mapping) else raw.get("repeat", raw)
    if not isinstance(repeat, Mapping):
        return None
    frequency, period = _number(repeat.get("frequency")), _number(repeat.get("period", 1))
    per_week = _PER_WEEK.get(str(repeat.get("periodUnit")))
    if frequency is None or not period or per_week is None:
        return None
    return frequency / period * per_week


def parse_dose(raw: Mapping[str, Any] | None) -> Dose:
    """The parts of a plan activity's dose the sessions service uses (see the module docstring)."""
    if not raw:
        return Dose()
    sets, reps = _number(raw.get("sets")), _number(raw.get("reps", raw.get("targetReps")))
    return Dose(
        sets=int(sets) if sets is not None else None,
        reps=int(reps) if reps is not None else None,
        load_kg=_number(raw.get("loadKg")),
        frequency_per_week=_frequency_per_week(raw),
    )


def apply_plan_event(view: PlanView | None, event_type: str, data: Mapping[str, Any]) -> PlanView:
    """The view after one plan event; the same view when the event is not newer than it.

    Raises ``pydantic.ValidationError`` or ``ValueError`` for data that cannot be read (the consumer
    sends such an event to the dead-letter topic).
    """
    event = PlanEventData.model_validate(data)
    care_plan = _ref(event.care_plan, "CarePlan")
    if view is not None and view.care_plan != care_plan:
        raise ValueError(f"event for {care_plan} applied to the view of {view.care_plan}")
    if view is not None and event.version_id <= view.version:
        return view
    patient = event.patient.removeprefix("Patient/")

    if event_type in SNAPSHOT_EVENTS:
        status = event.status or SNAPSHOT_EVENTS[event_type] or (view.status if view else "unknown")
        if event.activities is None:
            activities = dict(view.activities) if view else {}
        else:
            before = view.activities if view else {}
            activities = {
                a.id: ActivityView(
                    id=a.id,
                    pattern=a.pattern,
                    level=_level(a.level),
                    dose=parse_dose(a.dose),
                    status=a.status,
                    stage=a.stage or (before[a.id].stage if a.id in before else None),
                    cpt=a.cpt,
                )
                for a in event.activities
            }
        return PlanView(
            care_plan=care_plan,
            patient=patient,
            status=status,
            version=event.version_id,
            activities=activities,
        )

    if event_type not in (PROGRESSED, STAGE_CHANGED):
        raise ValueError(f"{event_type!r} is not a plan event ({', '.join(PLAN_EVENT_TYPES)})")
    # A change to a plan never seen: keep its version so older snapshots stay ignored; it is not
    # active until a snapshot says so.
    current = view or PlanView(care_plan=care_plan, patient=patient, status="unknown", version=0)
    activities = dict(current.activities)
    activity = activities.get(event.activity or "")
    if activity is not None and event_type == PROGRESSED:
        if event.dimension is None or event.to is None:
            raise ValueError("plan.progressed.v1 needs dimension and to")
        level = {**activity.level, _dimension(event.dimension): int(event.to)}
        # The snapshot riding along says the activity's CPT code at its new form.
        snapshot = next((a for a in event.activities or () if a.id == activity.id), None)
        activities[activity.id] = activity.model_copy(
            update={
                "level": level,
                "pattern": event.pattern or activity.pattern,
                "cpt": snapshot.cpt if snapshot is not None and snapshot.cpt else activity.cpt,
            }
        )
    elif activity is not None and event.stage:
        activities[activity.id] = activity.model_copy(update={"stage": event.stage})
    return current.model_copy(update={"version": event.version_id, "activities": activities})


def require_plan(
    view: PlanView | None, care_plan: str, patient: str | None = None, *, field: str = "carePlan"
) -> PlanView:
    """The view of ``care_plan`` if it is known, is ``patient``'s and is active; else 422 naming ``field``."""
    care_plan = _ref(care_plan, "CarePlan")
    if view is None:
        raise UnprocessableEntity(
            f"{field}: {care_plan} is not known to the sessions service (no plan event received for it)",
            expression=field,
        )
    if patient is not None and view.patient != patient.removeprefix("Patient/"):
        raise UnprocessableEntity(f"{field}: {care_plan} is the plan of another patient", expression=field)
    if view.status != "active":
        raise UnprocessableEntity(
            f"{field}: {care_plan} is not active (status {view.status}); "
            "sessions can only be logged against an active plan",
            expression=field,
        )
    return view


def check_activity(view: PlanView, activity_id: str, *, field: str = "activity") -> ActivityView:
    """The activity ``activity_id`` of the active plan ``view``; else 422 naming ``field``."""
    require_plan(view, view.care_plan)
    activity = view.activities.get(activity_id)
    if activity is None:
        known = ", ".join(sorted(view.activities)) or "none"
        raise UnprocessableEntity(
            f"{field}: '{activity_id}' is not an activity of the active plan {view.care_plan} "
            f"(its activities: {known})",
            expression=field,
        )
    if activity.status in _STOPPED:
        raise UnprocessableEntity(
            f"{field}: activity '{activity_id}' of {view.care_plan} is {activity.status}", expression=field
        )
    return activity
