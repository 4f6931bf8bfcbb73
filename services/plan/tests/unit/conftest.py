"""A patient's course in plain data: the evaluation that drafts the plan, and a clinic that logs sessions,
24-hour symptom responses and device metrics against it, one event at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relearn.plan.domain.catalogue import Catalogue, load_catalogue
from relearn.plan.domain.drafting import draft_plan
from relearn.plan.domain.editing import activate
from relearn.plan.domain.ids import stable_id
from relearn.plan.domain.inputs import (
    DeviceMetricComputed,
    EvaluationCompleted,
    SessionLogged,
    StreamMetricsCompleted,
    SymptomsRecorded,
    TrialSummarized,
)
from relearn.plan.domain.progression import (
    Outcome,
    apply_metric,
    apply_session,
    apply_stream_completed,
    apply_symptoms,
)
from relearn.plan.domain.rules import DEFAULT_RULES, ProgressionRules
from relearn.plan.domain.state import ActivityState, PlanState, Waiver
from relearn.shared.fhir import CANONICAL_URL

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
EVAL_CS = f"{CANONICAL_URL}/CodeSystem/neuromuscular-evaluation"
THERAPIST = "Practitioner/pt-ana"


def _coding(code: str, display: str, system: str = EVAL_CS) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _norm(value: float, limit: float, direction: str) -> dict[str, Any]:
    return {"value": value, "limit": limit, "direction": direction, "kind": "mean", "appliesTo": {}}


def _deficit(
    item: str,
    obs: str,
    measure: str,
    code: dict[str, str],
    kind: str,
    measured: float,
    unit: str,
    norm: dict[str, Any],
    severity: str,
    **extra: Any,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "item": item,
        "observationId": obs,
        "measure": measure,
        "code": code,
        "kind": kind,
        "side": None,
        "joint": None,
        "motion": None,
        "mode": None,
        "muscleGroup": None,
        "conditions": {},
        "measured": measured,
        "grade": None,
        "unit": unit,
        "norm": norm,
        "percentOfNorm": None,
        "severity": severity,
        "explanation": "",
    }
    return base | extra


def evaluation_payload() -> dict[str, Any]:
    """``evaluation.completed.v1`` data as the evaluation service publishes it: knee, ankle and balance."""
    return {
        "evaluationId": "eval-1",
        "patient": "pat-1",
        "kind": "initial",
        "effective": "2026-11-30T10:00:00+01:00",
        "encounter": "enc-eval-1",
        "performer": THERAPIST,
        "ageYears": 67,
        "normsVersion": "2026.1",
        "referralConditions": [
            {
                "observationId": "obs-ref-1",
                "kind": "stroke",
                "text": "Left hemiparesis after stroke",
                "onset": None,
            }
        ],
        "deficits": [
            _deficit(
                "rom[0]",
                "obs-rom-knee",
                "rom-knee-extension",
                _coding("rom-knee-extension", "Knee extension range of motion"),
                "range-of-motion",
                -15,
                "deg",
                _norm(0, -5, "below"),
                "moderate",
                side="left",
                joint="knee",
                motion="extension",
                mode="active",
            ),
            _deficit(
                "strength[0]",
                "obs-mmt-quads",
                "mmt-grade",
                _coding("mmt-grade", "Manual muscle test grade"),
                "strength",
                3,
                "{score}",
                _norm(5, 4, "below"),
                "moderate",
                side="left",
                muscleGroup="knee-extensors",
                grade="3",
            ),
            _deficit(
                "rom[1]",
                "obs-rom-ankle",
                "rom-ankle-dorsiflexion",
                _coding("rom-ankle-dorsiflexion", "Ankle dorsiflexion range of motion"),
                "range-of-motion",
                5,
                "deg",
                _norm(20, 10, "below"),
                "moderate",
                side="left",
                joint="ankle",
                motion="dorsiflexion",
                mode="active",
            ),
            _deficit(
                "balance[0]",
                "obs-sway",
                "sway-ellipse-area",
                _coding("sway-ellipse-area", "Centre of pressure 95% prediction ellipse area"),
                "balance",
                14.2,
                "cm2",
                _norm(5, 9, "above"),
                "moderate",
                conditions={"vision": "eyes-closed", "surface": "firm", "stance": "comfortable"},
            ),
            _deficit(
                "balance[1]",
                "obs-sls",
                "single-leg-stance",
                _coding("single-leg-stance", "Single-leg stance time"),
                "balance",
                4,
                "s",
                _norm(27, 15, "below"),
                "severe",
                side="left",
                conditions={"vision": "eyes-open", "surface": "firm", "stance": "single-leg"},
            ),
            _deficit(
                "balance[2]",
                "obs-tug",
                "tug",
                _coding("89423-8", "Timed Up and Go", "http://loinc.org"),
                "balance",
                16.5,
                "s",
                _norm(8, 12, "above"),
                "moderate",
            ),
            _deficit(
                "strength[1]",
                "obs-mmt-adductors",
                "mmt-grade",
                _coding("mmt-grade", "Manual muscle test grade"),
                "strength",
                4,
                "{score}",
                _norm(5, 5, "below"),
                "mild",
                side="left",
                muscleGroup="hip-adductors",
                grade="4",
            ),
            _deficit(
                "pain",
                "obs-pain",
                "pain",
                _coding("72514-3", "Pain severity", "http://loinc.org"),
                "pain",
                4,
                "{score}",
                _norm(0, 3, "above"),
                "mild",
            ),
        ],
        "goals": [
            {
                "observationId": "obs-goal-1",
                "text": "Climb the stairs at home without holding the rail",
                "target": None,
            },
            {
                "observationId": "obs-goal-2",
                "text": "Walk to the shops without fear of falling",
                "target": {
                    "measure": "tug",
                    "code": _coding("89423-8", "Timed Up and Go", "http://loinc.org"),
                    "value": 12,
                    "unit": "s",
                    "comparator": "<=",
                    "side": None,
                    "muscleGroup": None,
                    "dueDate": "2027-02-28",
                },
            },
        ],
        "concerns": [{"observationId": "obs-concern-1", "text": "Afraid of falling on the stairs"}],
    }


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture
def evaluation() -> EvaluationCompleted:
    return EvaluationCompleted.model_validate(evaluation_payload())


@pytest.fixture
def draft(evaluation: EvaluationCompleted, catalogue: Catalogue) -> PlanState:
    return draft_plan(evaluation, catalogue=catalogue, ids=stable_id)


DEVICE_CRITERIA = ("emg-onset-latency", "co-contraction", "sway-area", "sway-velocity")


def waive_device_criteria(plan: PlanState) -> PlanState:
    """The plan with every device criterion waived (the course tests judge sets, reps, quality, pain, ROM)."""
    waivers = tuple(
        Waiver(criterion=kind, reason="no EMG or balance board in this clinic", by=THERAPIST, at=START)
        for kind in DEVICE_CRITERIA
    )
    return plan.model_copy(update={"waivers": waivers})


@pytest.fixture
def strict(draft: PlanState) -> PlanState:
    """The active plan with no waiver: every criterion must be measured."""
    return activate(draft, by=THERAPIST, at=START - timedelta(hours=1)).plan


@pytest.fixture
def at_risk(strict: PlanState) -> PlanState:
    """Device criteria waived; the patient's TUG (16.5 s) puts them at fall risk."""
    return waive_device_criteria(strict)


@pytest.fixture
def active(at_risk: PlanState) -> PlanState:
    """Device criteria waived and no fall-risk screening: the course tests judge the other rules."""
    return at_risk.model_copy(update={"screening": None})


def activity_of(plan: PlanState, pattern: str) -> ActivityState:
    return next(a for a in plan.activities if a.pattern == pattern)


class Clinic:
    """Logs events against one plan and keeps the latest state; each call returns that event's Outcome."""

    def __init__(
        self, plan: PlanState, catalogue: Catalogue, rules: ProgressionRules = DEFAULT_RULES
    ) -> None:
        self.plan = plan
        self.catalogue = catalogue
        self.rules = rules
        self.count = 0

    def activity(self, pattern: str) -> ActivityState:
        return activity_of(self.plan, pattern)

    def _keep(self, outcome: Outcome) -> Outcome:
        self.plan = outcome.plan
        return outcome

    def session_event(
        self,
        pattern: str,
        *,
        day: float,
        reps: list[int] | None = None,
        quality: int | None = 3,
        pain_after: int = 1,
        with_feedback: bool = True,
        dual_task: bool = False,
        cost: float | None = None,
        self_rating: int | None = None,
        load: float = 0.0,
        streams: tuple[str, ...] = (),
        session: str | None = None,
        rom: float | None = 95.0,
        pain_before: int = 1,
        retention: bool = False,
    ) -> SessionLogged:
        activity = self.activity(pattern)
        self.count += 1
        start = START + timedelta(days=day)
        return SessionLogged.model_validate(
            {
                "session": session or f"Encounter/s{self.count}",
                "patient": self.plan.patient,
                "setting": "clinic",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=45)).isoformat(),
                "carePlan": self.plan.reference,
                "exercises": [
                    {
                        "procedure": f"Procedure/p{self.count}",
                        "activity": activity.id,
                        "pattern": pattern,
                        "level": {d.value: v for d, v in activity.levels.items()},
                        "sets": activity.dose.sets,
                        "reps": reps if reps is not None else [activity.dose.reps] * activity.dose.sets,
                        "targetReps": activity.dose.reps,
                        "loadKg": load,
                        "assistance": "none",
                        "cues": ["tactile-cueing"] if with_feedback else [],
                        "withFeedback": with_feedback,
                        "dualTask": dual_task,
                        "dualTaskCostPct": cost,
                        "quality": quality,
                        "selfRating": self_rating,
                        "painBefore": pain_before,
                        "painAfter": pain_after,
                        "deviceStreams": list(streams),
                        "retentionAttempt": retention,
                        "rom": None if rom is None else {"valueDeg": rom, "method": "goniometer"},
                    }
                ],
            }
        )

    def session(self, pattern: str, **kwargs: Any) -> Outcome:
        event = self.session_event(pattern, **kwargs)
        self.last_session = event
        return self._keep(apply_session(self.plan, event, catalogue=self.catalogue, rules=self.rules))

    def symptoms(self, session: str, *, day: float, pain24h: int = 1, flare: bool = False) -> Outcome:
        event = SymptomsRecorded.model_validate(
            {
                "session": session,
                "patient": self.plan.patient,
                "recordedAt": (START + timedelta(days=day)).isoformat(),
                "pain24h": pain24h,
                "flare": flare,
                "notes": None,
            }
        )
        return self._keep(apply_symptoms(self.plan, event, catalogue=self.catalogue, rules=self.rules))

    def good_day(self, pattern: str, *, day: float, **kwargs: Any) -> list[Outcome]:
        """A session within target and, the next day, its 24-hour response without a flare."""
        first = self.session(pattern, day=day, **kwargs)
        second = self.symptoms(self.last_session.session, day=day + 1)
        return [first, second]

    def stream_completed(self, stream: str, *, day: float, session: str | None = None) -> Outcome:
        event = StreamMetricsCompleted.model_validate(
            {"patient": self.plan.patient, "device": "dev-1", "stream": stream, "session": session}
        )
        at = START + timedelta(days=day)
        return self._keep(
            apply_stream_completed(self.plan, event, catalogue=self.catalogue, rules=self.rules, at=at)
        )

    def trial(self, payload: dict[str, Any]) -> list[Outcome]:
        """A ``device.trial-summarized.v1``: each result in turn, as the service applies it."""
        event = TrialSummarized.model_validate({"patient": self.plan.patient, **payload})
        return [
            self._keep(
                apply_metric(
                    self.plan, m, catalogue=self.catalogue, rules=self.rules, observation=m.observation
                )
            )
            for m in event.metrics()
        ]

    def metric(self, payload: dict[str, Any], observation: str | None = None) -> Outcome:
        event = DeviceMetricComputed.model_validate({"patient": self.plan.patient, **payload})
        return self._keep(
            apply_metric(
                self.plan, event, catalogue=self.catalogue, rules=self.rules, observation=observation
            )
        )


@pytest.fixture
def clinic(active: PlanState, catalogue: Catalogue) -> Clinic:
    return Clinic(active, catalogue)


@pytest.fixture
def make_clinic(catalogue: Catalogue) -> Callable[..., Clinic]:
    def make(plan: PlanState, rules: ProgressionRules = DEFAULT_RULES) -> Clinic:
        return Clinic(plan, catalogue, rules)

    return make


class Scene:
    """Constants and helpers of the scene, for tests (conftest is not importable under importlib mode)."""

    START = START
    THERAPIST = THERAPIST

    @staticmethod
    def waive_device_criteria(plan: PlanState) -> PlanState:
        return waive_device_criteria(plan)

    @staticmethod
    def payload() -> dict[str, Any]:
        return evaluation_payload()

    @staticmethod
    def activity_of(plan: PlanState, pattern: str) -> ActivityState:
        return activity_of(plan, pattern)


@pytest.fixture
def scene() -> type[Scene]:
    return Scene
