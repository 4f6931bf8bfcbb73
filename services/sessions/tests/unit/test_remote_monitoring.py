"""Device data days in the patient's time zone against the configurable remote-monitoring rule (CPT 99454)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from relearn.sessions.domain.adherence import weekly_adherence
from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.remote_monitoring import (
    DeviceDaysRule,
    device_data_days,
    device_days_report,
    periods_covering,
)
from relearn.sessions.domain.session import SessionState
from relearn.sessions.schemas import ExercisePerformed, HomePractice, SessionClose, SessionStart, parse
from relearn.sessions.service import close_session, log_home_practice, record_exercises, start_session

Exercise = Callable[..., dict[str, Any]]


def _clinic(sid: str, at: datetime, plan: PlanView, exercise: Exercise, streams: list[str]) -> SessionState:
    state = start_session(
        sid, parse(SessionStart, {"patient": "p1", "carePlan": "cp1", "start": at.isoformat()}), plan, now=at
    )
    state = record_exercises(state, [parse(ExercisePerformed, exercise(deviceStreams=streams))], plan)
    return close_session(state, SessionClose(), now=at + timedelta(minutes=30))


def _home(sid: str, at: datetime, plan: PlanView, streams: list[str]) -> SessionState:
    body = {
        "patient": "p1",
        "carePlan": "cp1",
        "activity": "knee-ext",
        "sets": 1,
        "reps": [10],
        "painAfter": 0,
        "start": at.isoformat(),
        "deviceStreams": streams,
    }
    return log_home_practice(sid, parse(HomePractice, body), plan, now=at)


def test_a_device_day_is_the_patients_local_day(plan: PlanView, exercise: Exercise) -> None:
    new_york = timezone(timedelta(hours=-5))
    late = _home(
        "h1", datetime(2026, 1, 11, 23, 30, tzinfo=new_york), plan, ["emg-1"]
    )  # 04:30 UTC on the 12th
    no_device = _home("h2", datetime(2026, 1, 10, 9, tzinfo=UTC), plan, [])
    # In the offset it was recorded with: Sunday the 11th (not the UTC Monday).
    assert device_data_days([late, no_device], None) == {date(2026, 1, 11)}
    # In an explicit time zone: Paris is already Monday.
    assert device_data_days([late], ZoneInfo("Europe/Paris")) == {date(2026, 1, 12)}
    assert device_data_days([late], ZoneInfo("America/New_York")) == {date(2026, 1, 11)}


def test_sixteen_days_in_thirty_meets_cpt_99454(plan: PlanView, exercise: Exercise) -> None:
    start = datetime(2026, 1, 1, 18, tzinfo=UTC)
    sessions = [_home(f"h{i}", start + timedelta(days=2 * i), plan, ["balance-1"]) for i in range(15)]
    sessions.append(_clinic("c1", start + timedelta(days=29), plan, exercise, ["emg-1"]))
    rule = DeviceDaysRule()
    assert (rule.min_days, rule.period_days) == (16, 30) and "99454" in rule.source
    (period,) = device_days_report(sessions, date(2026, 1, 3), date(2026, 1, 30), rule, None)
    assert (period.start, period.end, period.days, period.met) == (
        date(2026, 1, 1),
        date(2026, 1, 30),
        16,
        True,
    )
    # One day fewer (the clinic day dropped) fails it; a programme's own rule is a setting.
    (short,) = device_days_report(sessions[:-1], date(2026, 1, 3), date(2026, 1, 30), rule, None)
    assert (short.days, short.met) == (15, False)
    (lenient,) = device_days_report(
        sessions[:-1], date(2026, 1, 3), date(2026, 1, 30), DeviceDaysRule(min_days=12), None
    )
    assert lenient.met


def test_periods_end_on_the_last_day_and_cover_the_range() -> None:
    assert periods_covering(date(2026, 1, 1), date(2026, 2, 28), 30) == [
        (date(2025, 12, 31), date(2026, 1, 29)),
        (date(2026, 1, 30), date(2026, 2, 28)),
    ]


def test_the_week_holding_the_last_day_counts_only_its_days(plan: PlanView, exercise: Exercise) -> None:
    monday = datetime(2026, 1, 5, 9, tzinfo=UTC)
    sessions = [_clinic("c1", monday, plan, exercise, [])]
    # Asked on the Wednesday: 5 bouts x 3/7, not the whole week's 5 (no version history: the plan as now).
    (row,) = weekly_adherence(sessions, plan, last=date(2026, 1, 7))
    assert (row.prescribed, row.done) == (2.1, 1)
    (row,) = weekly_adherence(sessions, plan, last=date(2026, 1, 7), versions=[(monday, plan)])
    assert row.prescribed == 2.1
