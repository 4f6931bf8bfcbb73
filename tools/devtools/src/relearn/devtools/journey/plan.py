"""The plan service's domain API as the clinic reads it: a plan's state, the session records of its
exercises, and the catalogue's mastery criteria the device metrics are judged on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from relearn.devtools.journey.client import Api, JourneyError

# The plan's metric kinds and where the catalogue's mastery criterion on each keeps its upper limit
# (a key of ``mastery``, then a key inside it for the per-muscle criteria).
CRITERIA: dict[str, tuple[tuple[str, ...], str]] = {
    "sway-area": (("swayAreaMaxCm2",), "cm2"),
    "sway-velocity": (("swayVelocityMaxCmS",), "cm/s"),
    "emg-onset-latency": (("emgOnset", "maxMs"), "ms"),
    "co-contraction": (("coContraction", "maxPct"), "%"),
}


def _limit(mastery: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = mastery
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def activity_state(plan: Mapping[str, Any], pattern: str) -> dict[str, Any]:
    """The state of a plan's exercise of ``pattern`` (levels, dose, status, session log)."""
    for a in plan["state"]["activities"]:
        if a["pattern"] == pattern:
            result: dict[str, Any] = a
            return result
    raise JourneyError(f"the plan has no {pattern} exercise")


def session_record(plan: Mapping[str, Any], pattern: str, session_ref: str) -> dict[str, Any] | None:
    """What the plan logged of the ``pattern`` exercise in one session (``Encounter/<id>``), if anything."""
    for r in activity_state(plan, pattern).get("log", []):
        if r.get("session") == session_ref:
            record: dict[str, Any] = r
            return record
    return None


class PlanService:
    """Reads of the plan service's REST API with the clinic's token."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._mastery: dict[str, dict[str, Any]] = {}

    def plan(self, plan_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.call(
            "GET", f"{self.api.urls.plan}/plans/{plan_id}", 200, "the plan", headers=self.api.clinician
        )
        return body

    def mastery(self, pattern: str) -> dict[str, Any]:
        """The catalogue's mastery criteria of a pattern (GET /catalogue/{code})."""
        if pattern not in self._mastery:
            entry = self.api.call(
                "GET",
                f"{self.api.urls.plan}/catalogue/{pattern}",
                200,
                f"the {pattern} pattern",
                headers=self.api.clinician,
            )
            self._mastery[pattern] = dict(entry["mastery"])
        return self._mastery[pattern]

    def device_checks(
        self, plan: Mapping[str, Any], patterns: Iterable[str], session_ref: str
    ) -> dict[str, list[str]]:
        """The device metrics the plan holds for the session, per pattern, against the mastery criteria."""
        checks: dict[str, list[str]] = {}
        for pattern in patterns:
            record = session_record(plan, pattern, session_ref) or {}
            values: dict[str, list[float]] = {}
            absent: dict[str, str] = {}
            for m in record.get("metrics", []):
                if m.get("value") is None:
                    absent[str(m["kind"])] = str(m.get("status") or "not measured")
                    continue
                values.setdefault(str(m["kind"]), []).append(float(m["value"]))
            for kind, status in sorted(absent.items()):
                if kind not in values:
                    checks.setdefault(pattern, []).append(f"{kind} {status}")
            for kind, vs in sorted(values.items()):
                path, unit = CRITERIA.get(kind, ((), ""))
                limit = _limit(self.mastery(pattern), path) if path else None
                # Each value on its own (the engine never averages across channels or windows).
                text = f"{kind} {', '.join(f'{v:.3g}' for v in vs)} {unit}".rstrip()
                if limit is not None:
                    worst = max(vs)
                    text += f" <= {limit:g}" if worst <= limit else f" > {limit:g} (not within target)"
                checks.setdefault(pattern, []).append(text)
        return checks
