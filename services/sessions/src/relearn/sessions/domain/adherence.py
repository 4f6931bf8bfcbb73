"""Adherence per patient and ISO week: exercise bouts done against those the plan prescribes."""

# Each week is scored against the plan version in force on each of its days: an activity prescribed
# ``f`` times a week counts ``f / 7`` bouts for each day a version that prescribes it is in force (the
# plan active, the activity not stopped), so a week in which the plan starts, changes or ends mid-week
# is prorated; ``prescribed`` is that sum (one decimal). ``done`` counts the exercises logged against each
# activity in closed sessions, at most that activity's prescribed bouts that week, so extra practice of
# one exercise does not hide another one skipped. ``clinic`` and ``home`` count the closed sessions of
# each setting that week. A session belongs to the week of its start date in the offset it was recorded
# with (the patient's local day). The week holding the report's last day counts only the days up to it (a
# report asked for on a Wednesday does not charge Thursday to Sunday).
#
# A version is in force from the time of the plan event that made it (UTC date), or earlier when a
# session recorded against it (or a later version) started earlier: that session proves it was in force
# (sessions are often logged after the fact). Before the first version nothing is prescribed. A plan
# whose versions were never recorded (read model rows older than the version history) is scored whole
# weeks against the plan as it is now, as before.

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from relearn.sessions.domain.plan_view import STOPPED_STATUSES, PlanView
from relearn.sessions.domain.remote_monitoring import DeviceDaysPeriod, DeviceDaysRule
from relearn.sessions.domain.session import SessionState


class WeekAdherence(BaseModel):
    model_config = ConfigDict(frozen=True)

    week: str  # ISO week, e.g. "2026-W02"
    prescribed: float  # bouts, prorated over the days a plan version prescribing them was in force
    done: float
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
        if a.dose.frequency_per_week is not None and a.status not in STOPPED_STATUSES
    }


def daily_rates(plan: PlanView) -> dict[str, float]:
    """Bouts per day of each activity the version prescribes (none unless the plan is active)."""
    if plan.status != "active":
        return {}
    return {
        a.id: a.dose.frequency_per_week / 7
        for a in plan.activities.values()
        if a.dose.frequency_per_week is not None and a.status not in STOPPED_STATUSES
    }


def in_force_from(
    versions: Sequence[tuple[datetime, PlanView]], sessions: Iterable[SessionState]
) -> list[tuple[date, PlanView]]:
    """Each version with the first day it was in force, oldest first (see the module comment)."""
    ordered = sorted(versions, key=lambda v: v[1].version)
    days = [at.date() for at, _ in ordered]
    for s in sessions:
        for i, (_, view) in enumerate(ordered):
            if s.care_plan == view.care_plan and s.plan_version >= view.version:
                days[i] = min(days[i], s.start.date())
    for i in range(len(days) - 2, -1, -1):  # a version was in force before any later one
        days[i] = min(days[i], days[i + 1])
    return [(day, view) for day, (_, view) in zip(days, ordered, strict=True)]


def _week_prescription(
    monday: date, schedule: Sequence[tuple[date, PlanView]], last: date
) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for offset in range(_days_counted(monday, last)):
        day = monday + timedelta(days=offset)
        current = [view for start, view in schedule if start <= day]
        if current:
            for activity, rate in daily_rates(current[-1]).items():
                out[activity] += rate
    return dict(out)


def _days_counted(monday: date, last: date) -> int:
    """The days of the week starting ``monday`` up to ``last``: a week still under way is prorated."""
    return max(0, min(7, (last - monday).days + 1))


def weekly_adherence(
    sessions: Iterable[SessionState],
    plan: PlanView,
    *,
    first: date | None = None,
    last: date | None = None,
    versions: Sequence[tuple[datetime, PlanView]] = (),
) -> list[WeekAdherence]:
    """One row per ISO week from ``first`` to ``last`` (default: the sessions' weeks), empty ones too.

    ``versions`` are the plan's recorded versions with the time each was made; without them every
    week is scored against ``plan`` (whole weeks).
    """
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
    schedule = in_force_from(versions, closed) if versions else []
    now_prescribed = {a: float(n) for a, n in weekly_prescription(plan).items()}
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
        if schedule:
            prescription = _week_prescription(monday, schedule, last)
        else:
            share = _days_counted(monday, last) / 7
            prescription = {a: n * share for a, n in now_prescribed.items()}
        exact = sum(prescription.values())
        done_exact = sum(min(float(counts[a]), n) for a, n in prescription.items())
        prescribed, done = round(exact, 1), round(done_exact, 1)
        rows.append(
            WeekAdherence(
                week=week,
                prescribed=prescribed,
                done=done,
                clinic=settings.get(week, Counter())["clinic"],
                home=settings.get(week, Counter())["home"],
                percent=round(100 * done_exact / exact, 1) if exact else None,
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
class RemoteMonitoring:
    """Device data days against the remote-monitoring rule (relearn.sessions.domain.remote_monitoring)."""

    rule: DeviceDaysRule
    time_zone: str | None  # IANA; None: each session's own recorded offset
    periods: list[DeviceDaysPeriod]


@dataclass(frozen=True)
class AdherenceReport:
    patient: str
    first: date
    last: date
    weeks: list[WeekAdherence]
    plans: list[PlanAdherence]
    remote_monitoring: RemoteMonitoring | None = None


def combined_weeks(monday: date, last: date, plans: Sequence[PlanAdherence]) -> list[WeekAdherence]:
    """The patient's weeks over all plans (zero rows for weeks without a plan or a session)."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
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
        prescribed, done = round(prescribed, 1), round(done, 1)
        weeks.append(
            WeekAdherence(
                week=iso_week(day),
                prescribed=prescribed,
                done=done,
                clinic=int(clinic),
                home=int(home),
                percent=round(100 * done / prescribed, 1) if prescribed else None,
            )
        )
        day += timedelta(weeks=1)
    return weeks
