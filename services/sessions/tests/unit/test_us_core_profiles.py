"""Encounter and Procedure against the published US Core 6.1.0 profiles they claim (relearn.devtools.us_core:
required elements and slices, required/extensible bindings, mustSupport elements we leave empty named with
the reason)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from relearn.devtools.us_core import check
from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.session import SessionState
from relearn.sessions.mapper import encounter_resource, procedure_resources
from relearn.sessions.schemas import ExercisePerformed, HomePractice, SessionClose, SessionStart, parse
from relearn.sessions.service import close_session, log_home_practice, record_exercises, start_session

ENCOUNTER_NOT_SUPPORTED = {
    "Encounter.participant.period": "the therapist is there for the whole session: Encounter.period",
    "Encounter.reasonCode": "the reasons are the referral Conditions, in reasonReference",
    "Encounter.hospitalization": "an outpatient therapy session: no admission or discharge",
    "Encounter.location": "the clinic's rooms are not modelled",
    "Encounter.serviceProvider": "the clinic Organization is not modelled",
}


@pytest.fixture
def session(plan: PlanView, monday: datetime, exercise: Callable[..., dict[str, Any]]) -> SessionState:
    start = parse(
        SessionStart,
        {
            "patient": "p1",
            "carePlan": "cp1",
            "practitioner": "Practitioner/t1",
            "reasonReference": ["Condition/c1"],
        },
    )
    state = start_session("s1", start, plan, now=monday)
    exercises = [exercise(painAfter=7), exercise(activity="hip-abd", sets=2, reps=[12, 12])]
    state = record_exercises(state, [parse(ExercisePerformed, e) for e in exercises], plan)
    return close_session(state, SessionClose(), now=monday + timedelta(minutes=45))


def test_a_clinic_session_conforms_to_us_core_encounter(session: SessionState) -> None:
    encounter = encounter_resource(session)
    assert check(encounter, "us-core-encounter", not_supported=ENCOUNTER_NOT_SUPPORTED) == []
    # Encounter.type is SNOMED CT 229065009 with our session type; US Core's extensible value set is SNOMED CT
    # "is-a 308335008" or CPT: checked by code system (SNOMED CT is not expanded here).
    no_type = {k: v for k, v in encounter.items() if k != "type"}
    assert "Encounter.type is required (min 1)" in check(no_type, "us-core-encounter")


def test_every_procedure_conforms_to_us_core_procedure(
    session: SessionState, plan: PlanView, monday: datetime
) -> None:
    home = log_home_practice(
        "h1",
        parse(
            HomePractice,
            {
                "patient": "p1",
                "carePlan": "cp1",
                "activity": "knee-ext",
                "sets": 1,
                "reps": [10],
                "painAfter": 0,
            },
        ),
        plan,
        now=monday,
    )
    procedures = procedure_resources(session) + procedure_resources(home)
    assert len(procedures) == 3
    for procedure in procedures:
        assert check(procedure, "us-core-procedure") == [], procedure["id"]
    # The local movement pattern alone would break the extensible binding of Procedure.code.
    local_only = procedures[0] | {"code": {"coding": procedures[0]["code"]["coding"][-1:]}}
    assert any("Procedure.code" in p for p in check(local_only, "us-core-procedure"))
