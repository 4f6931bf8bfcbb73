from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from relearn.sessions.domain.adherence import WeekAdherence, iso_week, weekly_adherence
from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.session import SessionState
from relearn.sessions.schemas import ExercisePerformed, HomePractice, SessionClose, SessionStart, parse
from relearn.sessions.service import close_session, log_home_practice, record_exercises, start_session

Exercise = Callable[..., dict[str, Any]]
UTC = UTC


def _clinic(
    sid: str, at: datetime, activities: list[str], plan: PlanView, exercise: Exercise, close: bool = True
) -> SessionState:
    state = start_session(
        sid, parse(SessionStart, {"patient": "p1", "carePlan": "cp1", "start": at.isoformat()}), plan, now=at
    )
    state = record_exercises(
        state, [parse(ExercisePerformed, exercise(activity=a)) for a in activities], plan
    )
    return close_session(state, SessionClose(), now=at + timedelta(minutes=45)) if close else state


def _home(sid: str, at: datetime, activity: str, plan: PlanView) -> SessionState:
    body = {
        "patient": "p1",
        "carePlan": "cp1",
        "activity": activity,
        "sets": 1,
        "reps": [10],
        "painAfter": 0,
        "start": at.isoformat(),
    }
    return log_home_practice(sid, parse(HomePractice, body), plan, now=at)


def test_a_scripted_fortnight(plan: PlanView, exercise: Exercise) -> None:
    # The plan prescribes knee-ext 3x and hip-abd 2x a week: 5 bouts a week.
    w1 = datetime(2025, 12, 29, 9, tzinfo=UTC)  # Monday of ISO week 2026-W01
    w2 = w1 + timedelta(weeks=1)
    est = timezone(timedelta(hours=-5))
    sessions = [
        _clinic("c1", w1, ["knee-ext", "hip-abd"], plan, exercise),
        _home("h1", w1 + timedelta(days=2), "knee-ext", plan),
        _home("h2", w1 + timedelta(days=3), "knee-ext", plan),
        # A fourth knee bout is extra practice: it cannot make up for the missing hip bout.
        _home("h3", w1 + timedelta(days=4), "knee-ext", plan),
        # Sunday 23:30 in New York is Monday in UTC: it counts on the patient's Sunday, in W01.
        _home("h4", datetime(2026, 1, 4, 23, 30, tzinfo=est), "knee-ext", plan),
        _clinic("c2", w2 + timedelta(days=1), ["knee-ext"], plan, exercise),
        # Still open: not counted.
        _clinic("c3", w2 + timedelta(days=3), ["hip-abd"], plan, exercise, close=False),
    ]
    other_plan = sessions[5].model_copy(update={"id": "x1", "care_plan": "CarePlan/other"})
    rows = weekly_adherence([*sessions, other_plan], plan, last=date(2026, 1, 18))
    assert rows == [
        WeekAdherence(week="2026-W01", prescribed=5, done=4, clinic=1, home=4, percent=80.0),
        WeekAdherence(week="2026-W02", prescribed=5, done=1, clinic=1, home=0, percent=20.0),
        WeekAdherence(week="2026-W03", prescribed=5, done=0, clinic=0, home=0, percent=0.0),
    ]


def test_no_sessions_and_no_range_gives_no_rows(plan: PlanView) -> None:
    assert weekly_adherence([], plan) == []


def test_a_plan_without_frequencies_has_no_percentage(plan: PlanView, exercise: Exercise) -> None:
    bare = plan.model_copy(
        update={
            "activities": {
                k: a.model_copy(update={"dose": a.dose.model_copy(update={"frequency_per_week": None})})
                for k, a in plan.activities.items()
            }
        }
    )
    (row,) = weekly_adherence([_home("h1", datetime(2026, 1, 6, 8, tzinfo=UTC), "knee-ext", plan)], bare)
    assert (row.prescribed, row.done, row.home, row.percent) == (0, 0, 1, None)


def test_iso_week_crosses_the_year() -> None:
    assert iso_week(date(2025, 12, 29)) == "2026-W01"
    assert iso_week(date(2027, 1, 1)) == "2026-W53"


def _version(plan: PlanView, version: int, **changes: Any) -> PlanView:
    return plan.model_copy(update={"version": version, **changes})


def _knee_only_daily(plan: PlanView) -> PlanView:
    """Version 3: knee-ext every day, hip-abd completed."""
    knee = plan.activities["knee-ext"]
    hip = plan.activities["hip-abd"]
    return _version(
        plan,
        3,
        activities={
            "knee-ext": knee.model_copy(
                update={"dose": knee.dose.model_copy(update={"frequency_per_week": 7})}
            ),
            "hip-abd": hip.model_copy(update={"status": "completed"}),
        },
    )


def test_each_week_is_scored_against_the_version_in_force_then(plan: PlanView, exercise: Exercise) -> None:
    w1 = datetime(2025, 12, 29, 9, tzinfo=UTC)  # Monday of 2026-W01
    w2 = w1 + timedelta(weeks=1)
    v3 = _knee_only_daily(plan)
    versions = [(w1 - timedelta(days=7), plan), (w2, v3)]  # v2 (5 bouts a week) until W02, then v3
    sessions = [
        _clinic("c1", w1, ["knee-ext", "hip-abd"], plan, exercise),
        _clinic("c2", w2 + timedelta(days=1), ["knee-ext"], v3, exercise),
    ]
    rows = weekly_adherence(sessions, v3, last=date(2026, 1, 11), versions=versions)
    # W01 against version 2 (5 a week), not the plan as it is now (7 knee bouts).
    assert [(r.week, r.prescribed, r.done, r.percent) for r in rows] == [
        ("2026-W01", 5, 2, 40.0),
        ("2026-W02", 7, 1, 14.3),
    ]
    # Without the history (older read-model rows) every week is the current plan, as before.
    assert [r.prescribed for r in weekly_adherence(sessions, v3, last=date(2026, 1, 11))] == [
        7,
        7,
    ]  # hip-abd done


def test_a_partial_week_is_prorated(plan: PlanView, exercise: Exercise) -> None:
    thursday = datetime(2026, 1, 1, 9, tzinfo=UTC)  # the plan starts on the Thursday of 2026-W01
    sessions = [_clinic("c1", thursday + timedelta(days=1), ["knee-ext", "hip-abd"], plan, exercise)]
    rows = weekly_adherence(sessions, plan, last=date(2026, 1, 11), versions=[(thursday, plan)])
    # Four days of seven: 5 x 4/7 = 2.9 bouts prescribed, not a full week's 5.
    assert [(r.week, r.prescribed, r.done, r.percent) for r in rows] == [
        ("2026-W01", 2.9, 2, 70.0),
        ("2026-W02", 5, 0, 0.0),
    ]


def test_a_version_is_in_force_from_the_first_session_recorded_against_it(
    plan: PlanView, exercise: Exercise
) -> None:
    # The plan event arrived later than the sessions were dated (logged after the fact): the session
    # recorded against version 2 on Monday shows it was in force, so W01 is a whole week.
    w1 = datetime(2025, 12, 29, 9, tzinfo=UTC)
    sessions = [_clinic("c1", w1, ["knee-ext", "hip-abd"], plan, exercise)]
    rows = weekly_adherence(sessions, plan, last=date(2026, 1, 4), versions=[(w1 + timedelta(days=30), plan)])
    assert [(r.prescribed, r.done) for r in rows] == [(5, 2)]


def test_a_draft_or_finished_plan_prescribes_nothing(plan: PlanView, exercise: Exercise) -> None:
    w1 = datetime(2025, 12, 29, 9, tzinfo=UTC)
    draft = _version(plan, 1, status="draft")
    done = _version(plan, 3, status="completed")
    versions = [
        (w1 - timedelta(days=7), draft),
        (w1 + timedelta(days=2), plan),
        (w1 + timedelta(days=5), done),
    ]
    rows = weekly_adherence([], plan, first=date(2025, 12, 29), last=date(2026, 1, 4), versions=versions)
    # Active Wednesday to Friday only: 3 days of 7.
    assert [(r.prescribed, r.percent) for r in rows] == [(2.1, 0.0)]
