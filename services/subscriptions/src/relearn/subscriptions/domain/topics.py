"""The subscription topics Relearn publishes, and which domain events trigger each.

Each topic is a canonical URL with the filters a Subscription may set on it (``patient``, ``pattern``,
``stage``, ``category``). :func:`triggers` turns one domain event (CloudEvents ``type`` + ``data``) into the
notifications it raises: the topic, the focus resource and the values the filters are matched against.
Pure: no FastAPI, SQL, Kafka or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from relearn.shared.fhir import CANONICAL_URL

TOPIC_BASE = f"{CANONICAL_URL}/SubscriptionTopic"


@dataclass(frozen=True)
class Filter:
    name: str
    description: str
    # "reference" (patient: Patient/<id>) or "token" (a code)
    kind: str = "token"


PATIENT = Filter("patient", "The patient the focus resource is about (Patient/<id>)", "reference")
PATTERN = Filter("pattern", "A movement pattern code of the plan activity or exercise")
STAGE = Filter("stage", "The competence stage reached (cognitive, associative, ... as the plan codes them)")


@dataclass(frozen=True)
class Topic:
    slug: str
    title: str
    description: str
    resource: str  # the focus resource type
    event_types: tuple[str, ...]
    filters: tuple[Filter, ...]
    category_doc: str = ""

    @property
    def url(self) -> str:
        return f"{TOPIC_BASE}/{self.slug}"

    def filter(self, name: str) -> Filter | None:
        return next((f for f in self.filters if f.name == name), None)


def _category(doc: str) -> Filter:
    return Filter("category", doc)


TOPICS: tuple[Topic, ...] = (
    Topic(
        "plan-activated",
        "Plan activated",
        "A drafted CarePlan was reviewed and became active.",
        "CarePlan",
        ("plan.activated.v1",),
        (PATIENT, PATTERN),
    ),
    Topic(
        "plan-progressed",
        "Plan progressed or regressed",
        "The progression engine (or a therapist) advanced or regressed one dimension of an activity.",
        "CarePlan",
        ("plan.progressed.v1",),
        (PATIENT, PATTERN, STAGE, _category("advance | regress")),
    ),
    Topic(
        "competence-stage-changed",
        "Competence stage changed",
        "An activity moved to another stage of competence.",
        "CarePlan",
        ("plan.stage-changed.v1",),
        (PATIENT, PATTERN, STAGE),
    ),
    Topic(
        "goal-achieved",
        "Goal achieved",
        "A plan version marked a Goal achieved (a plan event whose goals[] has achieved: true; the focus is "
        "that Goal version).",
        "Goal",
        ("plan.updated.v1",),
        (PATIENT,),
    ),
    Topic(
        "evaluation-completed",
        "Evaluation completed",
        "An initial evaluation or a re-assessment was recorded (its panel Observation).",
        "Observation",
        ("evaluation.completed.v1", "evaluation.reassessed.v1"),
        (PATIENT, _category("initial | reassessment (the evaluation's kind)")),
    ),
    Topic(
        "session-logged",
        "Session logged",
        "A therapy session or home practice was closed (its Encounter).",
        "Encounter",
        ("session.logged.v1",),
        (PATIENT, PATTERN, _category("clinic | home (the session's setting)")),
    ),
    Topic(
        "device-metric-recorded",
        "Device metric recorded",
        "A device metric (EMG, balance) of a trial was summarised and stored as an Observation (one per "
        "metric of a trial, every channel and the window series inside).",
        "Observation",
        ("device.trial-summarized.v1", "device.metric-computed.v1"),
        (PATIENT, _category("the metric code (emg-rms, sway-ellipse-area, ...)")),
    ),
    Topic(
        "therapist-task-raised",
        "Therapist task raised",
        "The progression engine raised a question for the therapist (a FHIR Task).",
        "Task",
        ("plan.progressed.v1", "plan.stage-changed.v1", "plan.updated.v1"),
        (PATIENT, PATTERN),
    ),
)

BY_URL: Mapping[str, Topic] = {t.url: t for t in TOPICS}


@dataclass(frozen=True)
class Trigger:
    """One notification a domain event raises on one topic."""

    topic: str  # topic URL
    focus: str  # Type/id
    patient: str
    values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The focus version the event is about, when the event names it (CarePlan and Goal from plan events).
    version: str | None = None

    def matches(self, filters: Mapping[str, str]) -> bool:
        """Every filter of a subscription (name -> value) is met by this trigger."""
        for name, wanted in filters.items():
            if name == "patient":
                if wanted.removeprefix("Patient/") != self.patient:
                    return False
            elif wanted not in self.values.get(name, frozenset()):
                return False
        return True


def _strs(*values: Any) -> frozenset[str]:
    return frozenset(str(v) for v in values if v not in (None, ""))


def _activity_patterns(data: Mapping[str, Any]) -> frozenset[str]:
    acts = data.get("activities") or []
    return _strs(*(a.get("pattern") for a in acts if isinstance(a, Mapping)))


def _achieved_goals(data: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The Goals a plan event marks achieved, with the Goal version written: ``goals[]`` entries with
    ``achieved: true`` (docs/events.md). Nothing is read from the reason text."""
    goals = data.get("goals")
    out: list[tuple[str, str | None]] = []
    if isinstance(goals, list):
        for g in goals:
            if isinstance(g, Mapping) and g.get("achieved") is True and isinstance(g.get("goal"), str):
                version = g.get("versionId")
                out.append((str(g["goal"]), str(version) if isinstance(version, int | str) else None))
    return out


def _ref(value: Any, rtype: str) -> str:
    text = str(value)
    return text if "/" in text else f"{rtype}/{text}"


def triggers(event_type: str, subject: str, data: Mapping[str, Any]) -> list[Trigger]:
    """The notifications one domain event raises (empty when no topic cares)."""
    patient = str(data.get("patient") or subject)
    out: list[Trigger] = []
    t = {topic.slug: topic.url for topic in TOPICS}
    pattern = _strs(data.get("pattern")) or _activity_patterns(data)
    plan_version = data.get("versionId")
    pv = str(plan_version) if isinstance(plan_version, int | str) and plan_version != "" else None
    if event_type == "plan.activated.v1" and data.get("carePlan"):
        out.append(
            Trigger(t["plan-activated"], str(data["carePlan"]), patient, {"pattern": pattern}, version=pv)
        )
    elif event_type == "plan.progressed.v1" and data.get("carePlan"):
        values = {"pattern": pattern, "stage": _strs(data.get("stage")), "category": _strs(data.get("kind"))}
        out.append(Trigger(t["plan-progressed"], str(data["carePlan"]), patient, values, version=pv))
    elif event_type == "plan.stage-changed.v1" and data.get("carePlan"):
        values = {"pattern": pattern, "stage": _strs(data.get("stage"), data.get("to"))}
        out.append(Trigger(t["competence-stage-changed"], str(data["carePlan"]), patient, values, version=pv))
    if event_type.startswith("plan."):
        for goal, goal_version in _achieved_goals(data):
            out.append(Trigger(t["goal-achieved"], _ref(goal, "Goal"), patient, {}, version=goal_version))
    if event_type in ("evaluation.completed.v1", "evaluation.reassessed.v1") and data.get("evaluation"):
        kind = data.get("kind") or ("reassessment" if event_type == "evaluation.reassessed.v1" else "initial")
        out.append(
            Trigger(t["evaluation-completed"], str(data["evaluation"]), patient, {"category": _strs(kind)})
        )
    elif event_type == "session.logged.v1" and data.get("session"):
        exercises = data.get("exercises") or []
        patterns = _strs(*(e.get("pattern") for e in exercises if isinstance(e, Mapping)))
        values = {"pattern": patterns, "category": _strs(data.get("setting"))}
        out.append(Trigger(t["session-logged"], str(data["session"]), patient, values))
    elif event_type in ("device.trial-summarized.v1", "device.metric-computed.v1"):
        focus = _metric_observation(data)
        if focus is not None:
            out.append(
                Trigger(t["device-metric-recorded"], focus, patient, {"category": _strs(data.get("metric"))})
            )
    if event_type.startswith("plan."):
        tasks: Sequence[Any] = data.get("tasks") or ([data["task"]] if data.get("task") else [])
        for task in tasks:
            out.append(Trigger(t["therapist-task-raised"], _ref(task, "Task"), patient, {"pattern": pattern}))
    return out


def _metric_observation(data: Mapping[str, Any]) -> str | None:
    """The Observation the gateway names for the metric (``observation``); none in older events."""
    observation = data.get("observation")
    return _ref(observation, "Observation") if isinstance(observation, str) and observation else None
