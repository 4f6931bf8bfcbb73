"""Exercise ROM from session.logged.v1 as a FHIR Observation: the event's id, degrees, the instrument."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from relearn.evaluation.domain import codes
from relearn.evaluation.mapper import (
    home_practice_observations,
    rom_observations,
    session_outcome_observations,
    symptom_observation,
)
from relearn.evaluation.schemas import SessionLogged, SymptomsRecorded


def logged(**exercise: Any) -> SessionLogged:
    return SessionLogged.model_validate(
        {
            "session": "Encounter/s-1",
            "patient": "p-1",
            "end": "2026-11-20T09:45:00+00:00",
            "exercises": [
                {"procedure": "Procedure/pr-1", "activity": "a-1", "quality": 3, "rom": None},
                {"procedure": "Procedure/pr-2", "activity": "a-2", **exercise},
            ],
        }
    )


def test_an_exercise_rom_is_an_observation_under_the_events_id() -> None:
    rom = {
        "valueDeg": 92.5,
        "method": "goniometer",
        "motion": "knee flexion",
        "observation": "Observation/r-2",
    }
    (obs,) = rom_observations(
        logged(rom=rom, start="2026-11-20T09:10:00+00:00", end="2026-11-20T09:20:00+00:00")
    )
    Observation.model_validate(obs)
    assert obs["id"] == "r-2"
    assert obs["code"]["coding"] == [
        codes.local("rom-exercise-active"),
        dict(codes.measure("rom-knee-flexion").coding),  # the motion names a joint's ROM code
    ]
    assert obs["valueQuantity"] == {"value": 92.5, "unit": "deg", "system": codes.UCUM, "code": "deg"}
    assert obs["method"]["coding"] == [codes.local("rom-instrument-goniometer")]
    assert (obs["subject"], obs["encounter"], obs["partOf"]) == (
        {"reference": "Patient/p-1"},
        {"reference": "Encounter/s-1"},
        [{"reference": "Procedure/pr-2"}],
    )
    assert obs["category"][0]["coding"][0]["code"] == "exam"
    assert obs["effectivePeriod"] == {
        "start": "2026-11-20T09:10:00+00:00",
        "end": "2026-11-20T09:20:00+00:00",
    }


@pytest.mark.parametrize(
    ("method", "motion", "extra_codes"),
    [("inclinometer", "trunk rotation", 0), ("device", None, 0), ("device", "hip_abduction", 1)],
)
def test_rom_without_exercise_times_is_dated_at_the_session_end(
    method: str, motion: str | None, extra_codes: int
) -> None:
    rom = {"valueDeg": 30, "method": method, "motion": motion, "observation": "Observation/r-3"}
    (obs,) = rom_observations(logged(rom=rom))
    Observation.model_validate(obs)
    assert obs["effectiveDateTime"] == "2026-11-20T09:45:00+00:00"
    assert obs["valueQuantity"]["value"] == 30
    assert obs["method"]["coding"] == [codes.local(f"rom-instrument-{method}")]
    assert len(obs["code"]["coding"]) == 1 + extra_codes


def test_exercises_without_rom_write_no_rom_observation() -> None:
    assert rom_observations(logged()) == []


def test_home_practice_is_patient_reported_exercise_not_a_visit() -> None:
    home = SessionLogged.model_validate(
        {
            "session": "Procedure/pr-9",  # home practice: the exercise's Procedure, no Encounter
            "sessionId": "h-1",
            "encounter": None,
            "patient": "p-1",
            "setting": "home",
            "start": "2026-11-21T18:00:00+01:00",
            "end": "2026-11-21T18:25:00+01:00",
            "exercises": [
                {
                    "procedure": "Procedure/pr-9",
                    "activity": "knee-ext",
                    "pattern": "knee-extension",
                    "painAfter": 1,
                }
            ],
        }
    )
    activity, duration = home_practice_observations(home)
    for obs in (activity, duration):
        Observation.model_validate(obs)
        assert "encounter" not in obs
        assert obs["performer"] == [{"reference": "Patient/p-1"}]
        assert obs["effectivePeriod"]["start"] and obs["effectivePeriod"]["end"]  # required by the PA IG
        assert {c["coding"][0]["code"] for c in obs["category"]} == {"activity", "PhysicalActivity"}
    assert activity["code"]["coding"][0]["code"] == "73985-4"
    assert activity["valueCodeableConcept"]["coding"][0]["code"] == "knee-extension"
    assert activity["partOf"] == [{"reference": "Procedure/pr-9"}]
    assert duration["code"]["coding"][0]["code"] == "55411-3"
    assert duration["valueQuantity"] == {"value": 25, "unit": "min", "system": codes.UCUM, "code": "min"}
    # Its pain score names no Encounter either; a clinic session's gets none of these.
    [pain] = session_outcome_observations(home)
    assert "encounter" not in pain
    # ... nor its 24-hour response: that is partOf the Procedure the event names.
    h24 = symptom_observation(
        SymptomsRecorded.model_validate(
            {
                "session": "Procedure/pr-9",
                "patient": "p-1",
                "recordedAt": "2026-11-22T18:00:00+01:00",
                "pain24h": 2,
                "flare": False,
            }
        )
    )
    assert "encounter" not in h24 and h24["partOf"] == [{"reference": "Procedure/pr-9"}]
    assert home_practice_observations(logged()) == []
