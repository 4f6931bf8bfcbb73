"""HTTP routes of the sessions API: start, record, close, 24-hour symptoms, home practice, adherence."""

# Scopes (SMART):
#
# - clinic workflow (start, record exercises, close): ``user/Encounter.write`` (a clinician's app) or
#   ``system/Encounter.write`` (a backend); the session's Procedures are written with it. A
#   ``patient/`` token is refused (403): patients' apps log home practice instead.
# - home practice and the 24-hour symptom response: the above, or ``patient/Encounter.write``
#   for the token's own patient (home practice for another patient is 403; another patient's
#   session is 404).
# - reads (a session, adherence): ``Encounter.read`` in any context; a ``patient/`` token sees only
#   its own patient's sessions and adherence (404 otherwise, as the FHIR API does).
#
# Bodies are camelCase JSON; unknown fields are refused. Every error is an OperationOutcome whose
# ``expression`` names the field (``painAfter``, ``exercises[1].activity``) and nothing is stored.

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Body, Path, Query, Response

from relearn.sessions.mapper import code_systems
from relearn.sessions.schemas import (
    AdherenceView,
    ExerciseBatch,
    ExercisePerformed,
    HomePractice,
    OperationOutcome,
    SessionClose,
    SessionStart,
    SessionView,
    SymptomResponse,
)
from relearn.sessions.service import SessionRecorder
from relearn.shared.auth import Permission, Principal, PrincipalDep
from relearn.shared.fhir import FhirResponse, Forbidden, InvalidRequest, NotFound
from relearn.shared.service import SessionDep

_MAX_ADHERENCE_RANGE = timedelta(days=366 * 2)


def _error(description: str) -> dict[str, Any]:
    return {"model": OperationOutcome, "description": description}


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("A field is wrong (named in `expression`); nothing was stored"),
    401: _error("No valid bearer token"),
    403: _error("The token's scopes do not allow this"),
    # Also keeps FastAPI from documenting its own 422 validation error: ours is the 400 above.
    "default": _error("Any other error"),
}
_SESSION_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: _error("No such session (or not this patient's)"),
}


def _clinician(principal: Principal, letter: Permission) -> None:
    """A clinician's or system's write: starting a session is ``c``, recording into it ``u``."""
    principal.require("Encounter", letter)
    if principal.patient_restriction("Encounter", letter) is not None:
        raise Forbidden(
            "Clinic sessions are recorded with a user/ or system/ Encounter.write scope; "
            "a patient's app logs home practice (POST /sessions/home-practice)"
        )


def _writer(principal: Principal, letter: Permission) -> str | None:
    """The patient a writer (``c`` logging home practice, ``u`` recording symptoms) is limited to
    (patient/ token), or None."""
    principal.require("Encounter", letter)
    return principal.patient_restriction("Encounter", letter)


def _reader(principal: Principal, letter: Permission) -> str | None:
    """The patient a reader (``r`` one session by id, ``s`` a patient's adherence) is limited to, or None."""
    principal.require("Encounter", letter)
    return principal.patient_restriction("Encounter", letter)


def _now() -> datetime:
    return datetime.now(UTC)


SessionId = Annotated[str, Path(description="the session id (= its Encounter id)", max_length=64)]

_START_EXAMPLES = {
    "clinic": {
        "summary": "A clinic session against the patient's active plan",
        "value": {
            "patient": "p1",
            "carePlan": "CarePlan/cp1",
            "practitioner": "Practitioner/t1",
            "start": "2026-01-05T09:00:00+01:00",
        },
    }
}
_EXERCISE_EXAMPLE = {
    "activity": "knee-ext",
    "sets": 3,
    "reps": [10, 10, 8],
    "loadKg": 2.0,
    "assistance": "minimal",
    "cues": ["tactile-cueing", "emg-biofeedback"],
    "level": {"motion": 1},
    "quality": 3,
    "selfRating": 2,
    "painBefore": 2,
    "painAfter": 3,
    "withFeedback": True,
    "dualTask": False,
    "rom": {"valueDeg": 85, "method": "goniometer", "motion": "knee-extension"},
    "deviceStreams": ["emg-7f3a"],
}
_DUAL_TASK_EXAMPLE = {
    "activity": "sit-to-stand",
    "sets": 1,
    "reps": [8],
    "assistance": "none",
    "quality": 3,
    "painBefore": 1,
    "painAfter": 1,
    "withFeedback": False,
    "retentionAttempt": True,
    "dualTask": True,
    "dualTaskTrial": {"measure": "reps", "single": 10, "dual": 8, "lowerIsBetter": False},
}
_HOME_EXAMPLES = {
    "home": {
        "summary": "One exercise practised at home, logged by the patient's app",
        "value": {
            "patient": "p1",
            "carePlan": "CarePlan/cp1",
            "activity": "knee-ext",
            "sets": 2,
            "reps": [10, 9],
            "painAfter": 2,
            "difficulty": 2,
            "withFeedback": True,
            "deviceStreams": ["emg-7f3a"],
        },
    }
}
_SYMPTOM_EXAMPLES = {
    "settled": {"summary": "Next day, settled", "value": {"pain24h": 2, "flare": False}},
    "flare": {
        "summary": "Next day, a flare",
        "value": {"pain24h": 6, "flare": True, "notes": "knee swollen in the evening"},
    },
}


def _time_zone(name: str | None) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"tz: '{name}' is not an IANA time zone (e.g. Europe/Paris)", expression="tz"
        ) from None


def sessions_router(recorder: SessionRecorder) -> APIRouter:
    """The domain API of the session log (not FHIR: the FHIR view is under ``/fhir``)."""
    router = APIRouter(tags=["Sessions"])

    @router.get(
        "/sessions/code-systems",
        summary="The local CodeSystems used in Encounters and Procedures (a FHIR Bundle)",
        response_class=FhirResponse,
        responses=_ERRORS,
    )
    def get_code_systems(principal: PrincipalDep) -> FhirResponse:
        systems = code_systems()
        return FhirResponse(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "total": len(systems),
                "entry": [{"fullUrl": cs["url"], "resource": cs} for cs in systems],
            }
        )

    @router.post(
        "/sessions",
        status_code=201,
        response_model=SessionView,
        summary="Start a session against the patient's active care plan (Encounter in-progress)",
        responses={**_ERRORS, 422: _error("The plan is unknown, another patient's or not active")},
    )
    def start_session(
        body: Annotated[SessionStart, Body(openapi_examples=_START_EXAMPLES)],
        principal: PrincipalDep,
        db: SessionDep,
        response: Response,
    ) -> SessionView:
        _clinician(principal, "c")
        state = recorder.start(db, body, now=_now())
        response.headers["Location"] = f"/sessions/{state.id}"
        return SessionView.of(state)

    @router.get(
        "/sessions/{session_id}",
        response_model=SessionView,
        summary="A session with its exercises, summary and 24-hour response",
        responses=_SESSION_ERRORS,
    )
    def get_session(session_id: SessionId, principal: PrincipalDep, db: SessionDep) -> SessionView:
        return SessionView.of(recorder.get(db, session_id, patient=_reader(principal, "r")))

    @router.post(
        "/sessions/{session_id}/exercises",
        status_code=201,
        response_model=SessionView,
        summary="Record one exercise performed against an activity of the active plan (a Procedure)",
        responses={
            **_SESSION_ERRORS,
            409: _error("The session is closed"),
            422: _error(
                "`activity` is not an activity of the patient's active plan, or a rule between fields "
                "is broken (`retentionAttempt` with feedback, `dualTaskTrial` without `dualTask`, a "
                "client-typed `dualTaskCostPct`)"
            ),
        },
    )
    def record_exercise(
        session_id: SessionId,
        body: Annotated[
            ExercisePerformed,
            Body(
                openapi_examples={
                    "exercise": {"summary": "With its ROM", "value": _EXERCISE_EXAMPLE},
                    "retention-dual-task": {
                        "summary": "A feedback-free retention attempt under a dual task (cost 20 %)",
                        "value": _DUAL_TASK_EXAMPLE,
                    },
                }
            ),
        ],
        principal: PrincipalDep,
        db: SessionDep,
    ) -> SessionView:
        _clinician(principal, "u")
        return SessionView.of(recorder.record(db, session_id, [body], batch=False))

    @router.post(
        "/sessions/{session_id}/exercises/batch",
        status_code=201,
        response_model=SessionView,
        summary="Record several exercises at once (all or none); errors name `exercises[i].<field>`",
        responses={
            **_SESSION_ERRORS,
            409: _error("The session is closed"),
            422: _error(
                "`exercises[i].activity` is not an activity of the patient's active plan, or a rule "
                "between fields is broken (as for one exercise)"
            ),
        },
    )
    def record_exercises(
        session_id: SessionId,
        body: Annotated[
            ExerciseBatch, Body(openapi_examples={"batch": {"value": {"exercises": [_EXERCISE_EXAMPLE]}}})
        ],
        principal: PrincipalDep,
        db: SessionDep,
    ) -> SessionView:
        _clinician(principal, "u")
        return SessionView.of(recorder.record(db, session_id, body.exercises, batch=True))

    @router.post(
        "/sessions/{session_id}/close",
        response_model=SessionView,
        summary="Close the session: Encounter finished, summary computed, session.logged.v1 emitted",
        responses={
            **_SESSION_ERRORS,
            409: _error("The session is already closed"),
            422: _error("`end` is before the session started"),
        },
    )
    def close_session(
        session_id: SessionId,
        principal: PrincipalDep,
        db: SessionDep,
        body: Annotated[SessionClose | None, Body(openapi_examples={"now": {"value": {}}})] = None,
    ) -> SessionView:
        _clinician(principal, "u")
        state = recorder.close(db, session_id, body or SessionClose(), now=_now())
        return SessionView.of(state)

    symptom_errors = {
        **_SESSION_ERRORS,
        409: _error("The session is still open, or (POST) already has its response / (PUT) has none yet"),
        422: _error("`recordedAt` is before the session ended"),
    }

    @router.post(
        "/sessions/{session_id}/symptoms",
        status_code=201,
        response_model=SessionView,
        summary="Record the 24-hour symptom response (once; emits session.symptoms-recorded.v1)",
        responses=symptom_errors,
    )
    def record_symptoms(
        session_id: SessionId,
        body: Annotated[SymptomResponse, Body(openapi_examples=_SYMPTOM_EXAMPLES)],
        principal: PrincipalDep,
        db: SessionDep,
    ) -> SessionView:
        patient = _writer(principal, "u")
        state = recorder.record_symptoms(db, session_id, body, amend=False, now=_now(), patient=patient)
        return SessionView.of(state)

    @router.put(
        "/sessions/{session_id}/symptoms",
        response_model=SessionView,
        summary="Correct the 24-hour symptom response (the previous one is kept in symptomHistory)",
        responses=symptom_errors,
    )
    def amend_symptoms(
        session_id: SessionId,
        body: Annotated[SymptomResponse, Body(openapi_examples=_SYMPTOM_EXAMPLES)],
        principal: PrincipalDep,
        db: SessionDep,
    ) -> SessionView:
        patient = _writer(principal, "u")
        state = recorder.record_symptoms(db, session_id, body, amend=True, now=_now(), patient=patient)
        return SessionView.of(state)

    @router.post(
        "/sessions/home-practice",
        status_code=201,
        response_model=SessionView,
        summary="Log home practice of one exercise (a finished home Encounter; emits session.logged.v1)",
        responses={
            **_ERRORS,
            422: _error("The plan or `activity` is unknown, another patient's or not active"),
        },
    )
    def log_home_practice(
        body: Annotated[HomePractice, Body(openapi_examples=_HOME_EXAMPLES)],
        principal: PrincipalDep,
        db: SessionDep,
        response: Response,
    ) -> SessionView:
        patient = _writer(principal, "c")
        if patient is not None and body.patient != patient:
            raise Forbidden(
                f"This token may only log home practice of Patient/{patient}", expression="patient"
            )
        state = recorder.log_home_practice(db, body, now=_now())
        response.headers["Location"] = f"/sessions/{state.id}"
        return SessionView.of(state)

    @router.get(
        "/patients/{patient}/adherence",
        response_model=AdherenceView,
        summary="Adherence per ISO week: exercise bouts done vs prescribed, clinic and home sessions",
        responses={**_ERRORS, 404: _error("Another patient's (patient token)")},
    )
    def get_adherence(
        patient: Annotated[str, Path(description="the patient id", max_length=64)],
        principal: PrincipalDep,
        db: SessionDep,
        first: Annotated[
            date | None, Query(alias="from", description="first day (default: 4 weeks before `to`)")
        ] = None,
        last: Annotated[date | None, Query(alias="to", description="last day (default: today, UTC)")] = None,
        tz: Annotated[
            str | None,
            Query(
                description="the patient's IANA time zone (Europe/Paris) device data days are counted in "
                "(default: each session's recorded offset)",
                max_length=64,
            ),
        ] = None,
    ) -> AdherenceView:
        restriction = _reader(principal, "s")
        patient = patient.removeprefix("Patient/")
        if restriction is not None and patient != restriction:
            raise NotFound(f"Patient/{patient} is not known")
        last = last or _now().date()
        first = first or last - timedelta(weeks=4) + timedelta(days=1)
        if first > last:
            raise InvalidRequest("from: must not be after `to`", expression="from")
        if last - first > _MAX_ADHERENCE_RANGE:
            raise InvalidRequest("from: the range may span at most two years", expression="from")
        return AdherenceView.of(recorder.adherence(db, patient, first, last, tz=_time_zone(tz)))

    return router
