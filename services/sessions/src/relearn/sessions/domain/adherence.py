"""Adherence per patient and ISO week: exercise bouts done against those the plan prescribes."""

# For each week, ``prescribed`` is the sum over the plan's activities of their weekly frequency
# (rounded half up); ``done`` counts the exercises logged against each activity in closed sessions,
# at most that activity's frequency, so extra practice of one exercise does not hide another one
# skipped. ``clinic`` and ``home`` count the closed sessions of each setting that week. A session
# belongs to the week of its start date in the offset it was recorded with (the patient's local day).
# The prescription is the plan as it is now; weeks are whole ISO weeks.

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict

from relearn.sessions.domain.plan_view import PlanView
from relearn.sessions.domain.session import SessionState


class WeekAdherence(BaseModel):
    model_config = ConfigDict(frozen=True)

    week: str  # ISO week, e.g. "2026-W02"
    prescribed: int
    done: int
    clinic: int
    home: int
    percent: float | None  # None when nothing was prescribed


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly_prescription(plan: PlanView) -> dict[str, int]:
    """Exercise bouts per week for each activity with a frequency."""
    return {
        a.id: math.floor(a.dose.frequency_per_week + 0.5)
        for a in plan.activities.values()
        if a.dose.frequency_per_week is not None
    }


def weekly_adherence(
    sessions: Iterable[SessionState], plan: PlanView, *, first: date | None = None, last: date | None = None
) -> list[WeekAdherence]:
    """One row per ISO week from ``first`` to ``last`` (default: the sessions' weeks), empty ones too."""
    closed = [
        s
        for s in sessions
        if s.status == "finished" and s.care_plan == plan.care_plan and s.patient == plan.patient
    ]
    days = [s.start.date() for s in closed]
    first = first or min(days, default=None)
    last = last or max(days, default=None)
    if first is None or last is None:
        return []
    prescription = weekly_prescription(plan)
    bouts: dict[str, Counter[str]] = {}
    settings: dict[str, Counter[str]] = {}
    for s in closed:
        week = iso_week(s.start.date())
        settings.setdefault(week, Counter())[s.setting] += 1
        bouts.setdefault(week, Counter()).update(e.activity for e in s.exercises)
    rows: list[WeekAdherence] = []
    monday = _monday(first)
    while monday <= last:
        week = iso_week(monday)
        counts = bouts.get(week, Counter())
        prescribed = sum(prescription.values())
        done = sum(min(counts[a], n) for a, n in prescription.items())
        rows.append(
            WeekAdherence(
                week=week,
                prescribed=prescribed,
                done=done,
                clinic=settings.get(week, Counter())["clinic"],
                home=settings.get(week, Counter())["home"],
                percent=round(100 * done / prescribed, 1) if prescribed else None,
            )
        )
        monday += timedelta(weeks=1)
    return rows


@dataclass(frozen=True)
class PlanAdherence:
    care_plan: str
    status: str
    weeks: list[WeekAdherence]


@dataclass(frozen=True)
class AdherenceReport:
    patient: str
    first: date
    last: date
    weeks: list[WeekAdherence]
    plans: list[PlanAdherence]


def combined_weeks(monday: date, last: date, plans: Sequence[PlanAdherence]) -> list[WeekAdherence]:
    """The patient's weeks over all plans (zero rows for weeks without a plan or a session)."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for plan in plans:
        for row in plan.weeks:
            t = totals[row.week]
            t[0] += row.prescribed
            t[1] += row.done
            t[2] += row.clinic
            t[3] += row.home
    weeks: list[WeekAdherence] = []
    day = monday
    while day <= last:
        prescribed, done, clinic, home = totals[iso_week(day)]
        weeks.append(
            WeekAdherence(
                week=iso_week(day),
                prescribed=prescribed,
                done=done,
                clinic=clinic,
                home=home,
                percent=round(100 * done / prescribed, 1) if prescribed else None,
            )
        )
        day += timedelta(weeks=1)
    return weeks
