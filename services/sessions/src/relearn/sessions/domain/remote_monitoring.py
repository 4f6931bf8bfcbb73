"""Device data days per patient against the remote physiologic monitoring rule (configurable, sourced).

A *device data day* is a day, in the patient's time zone, on which at least one exercise of a closed session
(clinic or home) recorded device data (it names one or more device streams). The day is the exercise's own
start, else its session's start, converted to the patient's time zone when one is given (an IANA name), else
read in the UTC offset the session was recorded with (the patient's local time as their app or clinic sent
it). A session recorded at 23:30 in Paris is that Paris day, not the next UTC one.

The rule counts those days in each period of ``period_days`` days, the last period ending on the report's last
day and the ones before it back to its first day; a period meets the rule with at least ``min_days``. The
default is Medicare's remote physiologic monitoring requirement for CPT 99454 (device supply with daily
recording(s) or programmed alert(s) transmission, each 30 days): data on at least 16 days of the 30-day
period (CMS, Medicare Physician Fee Schedule CY 2021 final rule). Both numbers are settings
(``SESSIONS_RPM_MIN_DAYS``, ``SESSIONS_RPM_PERIOD_DAYS``) for a payer or a programme with another rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from relearn.sessions.domain.session import SessionState

RPM_SOURCE = (
    "CMS Medicare Physician Fee Schedule, remote physiologic monitoring: CPT 99454 (device supply with "
    "daily recording(s) or programmed alert(s) transmission, each 30 days) needs data collected on at least "
    "16 days of the 30-day period (CY 2021 PFS final rule)"
)


class DeviceDaysRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_days: int = Field(default=16, ge=1, le=366)
    period_days: int = Field(default=30, ge=1, le=366)
    source: str = RPM_SOURCE


class DeviceDaysPeriod(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: date
    end: date
    days: int = Field(description="distinct days with device data in the period")
    dates: list[date]
    met: bool = Field(description="days >= the rule's minDays")


def local_day(moment: datetime, tz: ZoneInfo | None) -> date:
    """The calendar day of ``moment`` in ``tz``, else in the offset it was recorded with."""
    return (moment.astimezone(tz) if tz is not None else moment).date()


def device_data_days(sessions: Iterable[SessionState], tz: ZoneInfo | None) -> set[date]:
    """Every day (patient's time zone) on which a closed session's exercise recorded device data."""
    days: set[date] = set()
    for s in sessions:
        if s.status != "finished":
            continue
        for e in s.exercises:
            if e.device_streams:
                days.add(local_day(e.start or s.start, tz))
    return days


def periods_covering(first: date, last: date, period_days: int) -> list[tuple[date, date]]:
    """Consecutive periods of ``period_days`` days, the last ending on ``last``, back to ``first``; oldest
    first."""
    out: list[tuple[date, date]] = []
    end = last
    while end >= first:
        out.append((end - timedelta(days=period_days - 1), end))
        end -= timedelta(days=period_days)
    return out[::-1]


def device_days_report(
    sessions: Iterable[SessionState], first: date, last: date, rule: DeviceDaysRule, tz: ZoneInfo | None
) -> list[DeviceDaysPeriod]:
    days = device_data_days(sessions, tz)
    report = []
    for start, end in periods_covering(first, last, rule.period_days):
        inside = sorted(d for d in days if start <= d <= end)
        report.append(
            DeviceDaysPeriod(
                start=start, end=end, days=len(inside), dates=inside, met=len(inside) >= rule.min_days
            )
        )
    return report
