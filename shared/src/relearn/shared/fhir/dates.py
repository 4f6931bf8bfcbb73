"""FHIR date/dateTime/instant text as UTC ranges: ``2013-04`` is all of April 2013.

Every value has an implicit range given by its precision; a missing time zone is read as
UTC. Ranges are closed: ``high`` is the last microsecond inside the precision.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

MIN_UTC = datetime(1, 1, 1, tzinfo=UTC)
MAX_UTC = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_ONE_US = timedelta(microseconds=1)


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """The UTC range ``text`` stands for, or None when it is not a FHIR date/dateTime/instant."""
    m = _DATE.match(text.strip())
    if not m:
        return None
    g = m.groupdict()
    try:
        start, step = _start_and_step(g)
    except ValueError:  # month 13, day 32 ...
        return None
    try:
        last = step(start) - _ONE_US
    except (OverflowError, ValueError):  # the end of year 9999
        last = datetime.max
    offset = _offset(g["tz"])
    return _to_utc(start, offset), _to_utc(last, offset)


def _start_and_step(g: dict[str, str | None]) -> tuple[datetime, Callable[[datetime], datetime]]:
    year = int(g["y"] or 0)
    if g["m"] is None:
        return datetime(year, 1, 1), lambda d: d.replace(year=d.year + 1)
    month = int(g["m"] or 0)
    if g["d"] is None:
        return datetime(year, month, 1), _next_month
    day = datetime(year, month, int(g["d"] or 0))
    if g["H"] is None:
        return day, lambda d: d + timedelta(days=1)
    start = day.replace(hour=int(g["H"] or 0), minute=int(g["M"] or 0))
    if g["S"] is None:
        return start, lambda d: d + timedelta(minutes=1)
    frac = g["f"] or ""
    start = start.replace(second=int(g["S"]), microsecond=int(frac[:6].ljust(6, "0")) if frac else 0)
    width = timedelta(microseconds=10 ** (6 - min(len(frac), 6)))
    return start, lambda d: d + width


def _next_month(d: datetime) -> datetime:
    return d.replace(year=d.year + 1, month=1) if d.month == 12 else d.replace(month=d.month + 1)


def _offset(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    return sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))


def _to_utc(local: datetime, offset: timedelta) -> datetime:
    try:
        return (local - offset).replace(tzinfo=UTC)
    except OverflowError:
        return MIN_UTC if offset > timedelta(0) else MAX_UTC


def as_utc(dt: datetime) -> datetime:
    """An aware UTC datetime; naive values (SQLite gives those back) are taken as UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def format_instant(dt: datetime) -> str:
    """``2024-05-01T10:20:30.123Z``: the server's instant text (millisecond precision)."""
    dt = as_utc(dt)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def now_ms() -> datetime:
    """The current UTC time truncated to milliseconds (what ``meta.lastUpdated`` can express)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
