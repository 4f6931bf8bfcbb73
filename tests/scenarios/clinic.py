"""The scenario harness: a clinic that evaluates patients, drafts and activates their plans, runs sessions
with synthetic device trials, records 24-hour responses, and reads back the decisions each step produced.

Everything goes through the services' public HTTP APIs (``POST /evaluations``; ``/plans...``;
``/sessions...``; ``POST /fhir/Device``, ``/streams``, ``/ingest/frames``) with development tokens. After
each call that starts asynchronous work the clinic waits until every event in flight has been handled
(:class:`~relearn.devtools.inprocess.Quiescence`), then reads the plan: the decisions of a step are those of
the CarePlan versions written since the step began.

Contract fields of issue 12 are sent only when a scenario uses them (exercise ``rom``, ``retentionAttempt``,
``dualTaskTrial``; stream ``muscles`` and ``pairs``), so scenarios without them run on today's services.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from kafka import KafkaConsumer, TopicPartition

from relearn.devtools.apps import wait_for
from relearn.devtools.inprocess import InProcessApi, Quiescence
from relearn.devtools.journey.client import JourneyError, iso
from relearn.devtools.journey.gateway import Gateway
from relearn.devtools.journey.plan import activity_state
from relearn.devtools.journey.recordings import Recording, default_data_dir
from relearn.shared.events import PLAN_EVENTS, CloudEvent
from relearn.shared.fhir import CANONICAL_URL

from .signals import Burst, emg_bursts, scaled_balance

KIND_SYSTEM = f"{CANONICAL_URL}/CodeSystem/device-kind"
PROPERTY_SYSTEM = f"{CANONICAL_URL}/CodeSystem/device-property"
UCUM = "http://unitsofmeasure.org"
BALANCE_CONDITIONS = (("open", "firm"), ("closed", "firm"), ("open", "foam"), ("closed", "foam"))

Status = Literal["pass", "fail", "missing", "waived", "pending"]
# Criteria judged on a measurement (an Observation), not on the session's own record.
MEASURED = ("rom", "emg-onset-latency", "co-contraction", "sway-area", "sway-velocity")


# -- what a scenario says ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmgTrial:
    """A synthetic EMG trial: one burst per channel, the channels bound to muscles (contract A ``muscles``,
    sent only when given), the onset reference channel and/or the cue, declared agonist/antagonist ``pairs``
    (contract A, sent only when given) and MVC per channel. ``close_late``: the stream is bound and pushed
    before the exercise is recorded (and cited by it) but left open until a :class:`CloseStreams` step."""

    bursts: tuple[Burst, ...]
    muscles: Mapping[str, str] | None = None
    reference: str | None = None
    cue: bool = True
    pairs: tuple[tuple[str, str], ...] | None = None
    mvc: Mapping[str, float] | None = None
    close_late: bool = False
    cue_s: float = 1.0

    def protocol(self) -> dict[str, Any]:
        protocol: dict[str, Any] = {"task": "knee extension on cue"}
        if self.cue:
            protocol["cueTime"] = self.cue_s
        if self.reference is not None:
            protocol["onsetReference"] = self.reference
        if self.muscles is not None:
            protocol["muscles"] = dict(self.muscles)
        if self.pairs is not None:
            protocol["pairs"] = [{"agonist": a, "antagonist": b} for a, b in self.pairs]
        return protocol

    def recording(self) -> Recording:
        return emg_bursts(self.bursts, cue_s=self.cue_s)


@dataclass(frozen=True)
class BalanceTrial:
    """A force-plate quiet-standing trial of a sensory condition (0 eyes open firm ... 3 eyes closed foam)
    with the centre-of-pressure excursions scaled by ``sway_scale``."""

    condition: int = 0
    sway_scale: float = 1.0
    seconds: float = 20.0


@dataclass(frozen=True)
class DualTaskTrial:
    """Contract D: paired single/dual measurements of the same trial."""

    measure: str
    single: float
    dual: float
    lower_is_better: bool = False
    unit: str | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "measure": self.measure,
            "single": self.single,
            "dual": self.dual,
            "lowerIsBetter": self.lower_is_better,
        }
        if self.unit is not None:
            out["unit"] = self.unit
        return out


class Step(Protocol):
    def run(self, patient: Patient) -> None: ...


@dataclass(frozen=True)
class Session:
    """A clinic session of one exercise at the plan's current level and dose, then its 24-hour response.

    ``reps``/``load_kg``: per set / the load used (default: the prescription). ``rom``: degrees of active ROM
    recorded with a goniometer (contract D). ``after``: time since the previous session ended (default 2
    days). ``pain24h=None`` leaves the 24-hour response for a :class:`Symptoms` step. ``late_emg``: a further
    EMG trial bound to this session but cited by no exercise, streamed after the 24-hour response.
    """

    pattern: str | None = None
    quality: int = 3
    self_rating: int | None = 3
    pain_before: int = 1
    pain_after: int = 1
    with_feedback: bool = True
    reps: int | None = None
    load_kg: float | None = None
    rom: float | None = None
    emg: EmgTrial | None = None
    balance: BalanceTrial | None = None
    late_emg: EmgTrial | None = None
    retention_attempt: bool | None = None
    dual_task_trial: DualTaskTrial | None = None
    after: timedelta = timedelta(days=2)
    pain24h: int | None = 1
    flare: bool = False

    def run(self, patient: Patient) -> None:
        patient.session(self)


@dataclass(frozen=True)
class Symptoms:
    """The 24-hour response to the latest session (``hours`` after it ended)."""

    pain24h: int
    flare: bool = False
    hours: float = 24.0

    def run(self, patient: Patient) -> None:
        patient.symptoms(self.pain24h, self.flare, hours=self.hours)


@dataclass(frozen=True)
class Override:
    """A therapist's override of levels, stage or dose of an exercise (recorded with its reason)."""

    levels: Mapping[str, int] | None = None
    stage: str | None = None
    dose: Mapping[str, float] | None = None
    pattern: str | None = None

    def run(self, patient: Patient) -> None:
        patient.override(self)


@dataclass(frozen=True)
class Waive:
    """A therapist waives one mastery criterion of a pattern for this plan, with a reason."""

    criterion: str
    muscle: str | None = None
    reason: str = "electrodes not tolerated: judged on quality"
    pattern: str | None = None

    def run(self, patient: Patient) -> None:
        patient.waive(self)


@dataclass(frozen=True)
class AnswerTask:
    """The therapist approves (or rejects) the plan's latest open Task, with a reason."""

    approve: bool = True
    reason: str = "reviewed with the patient: supervised"

    def run(self, patient: Patient) -> None:
        patient.answer_task(self.approve, self.reason)


@dataclass(frozen=True)
class CloseStreams:
    """Close the streams left open by ``EmgTrial(close_late=True)``: their metrics arrive now."""

    def run(self, patient: Patient) -> None:
        patient.close_open_streams()


@dataclass(frozen=True)
class Check:
    """Check what the previous step decided, mid-row."""

    expect: Expect

    def run(self, patient: Patient) -> None:
        patient.check(self.expect)


def clean(n: int, **kwargs: Any) -> list[Session]:
    """``n`` qualifying sessions (full dose, quality 3, pain 1/10, no flare)."""
    return [Session(**kwargs) for _ in range(n)]


@dataclass(frozen=True)
class Setup:
    """The patient's evaluation and plan: which exercises it keeps (``patterns``, the first is the default
    of each step), rule overrides plan-wide and per pattern, and the evaluation's fall-risk screening."""

    patterns: tuple[str, ...] = ("pelvic-tilt",)
    rules: Mapping[str, Any] | None = None
    pattern_rules: Mapping[str, Any] | None = None
    berg: float | None = 54
    tug: float | None = 9.0
    pain: int | None = 1


@dataclass(frozen=True)
class Expect:
    """What the last step must have decided: a decision of ``kind`` (``task``: a Task or proposal for the
    therapist) whose reason contains every text of ``reason`` (case-insensitive), on ``dimension`` when
    given, to ``to`` when given; ``criteria``: ``"<tokens>" -> status`` for the criterion whose JSON contains
    every token; ``absent``: decision kinds the last step must NOT have produced; ``careplan``: texts the
    current CarePlan (as an EHR reads it) must contain."""

    kind: str | None = None
    reason: tuple[str, ...] = ()
    dimension: str | None = None
    to: Any = None
    criteria: Mapping[str, Status] = field(default_factory=dict)
    absent: tuple[str, ...] = ()
    careplan: tuple[str, ...] = ()
    evidence_sources: bool = False  # every pass/fail criterion cites its source Observation
    cites_observation: bool = False  # the decision's evidence includes a device-metric Observation
    settled: bool = True  # the plan waits for no stream's metrics: it judged every session of the row
    event: bool = False  # the plan event of the decision's version carries the same criteria


# -- the clinic ----------------------------------------------------------------------------------------------


def _brief(decision: Mapping[str, Any]) -> dict[str, Any]:
    """A decision without its criteria list, for failure messages."""
    return {k: v for k, v in decision.items() if k not in ("criteria", "evidence")}


class Clinic:
    """The platform as a clinic uses it; :meth:`patient` starts a fresh patient's course."""

    def __init__(
        self, api: InProcessApi, quiet: Quiescence, bootstrap: str, data_dir: Path | None = None
    ) -> None:
        self.api = api
        self.quiet = quiet
        self.bootstrap = bootstrap
        self.data_dir = data_dir or default_data_dir()
        self._sided: dict[str, bool] = {}

    def call(self, method: str, url: str, status: int | tuple[int, ...], what: str, **kw: Any) -> Any:
        headers = {**self.api.clinician, **kw.pop("headers", {})}
        return self.api.call(method, url, status, what, headers=headers, **kw)

    def sided(self, pattern: str) -> bool:
        if pattern not in self._sided:
            entry = self.call("GET", f"{self.api.urls.plan}/catalogue/{pattern}", 200, f"pattern {pattern}")
            self._sided[pattern] = bool(entry.get("sided", False))
        return self._sided[pattern]

    def patient(self, setup: Setup) -> Patient:
        return Patient(self, setup)


def evaluation_body(patient: str, at: datetime, setup: Setup) -> dict[str, Any]:
    """An initial evaluation: right knee extensors graded 3, the fall-risk screening the setup gives."""
    balance: list[dict[str, Any]] = []
    if setup.berg is not None:
        balance.append({"test": "berg", "value": setup.berg})
    if setup.tug is not None:
        balance.append({"test": "tug", "value": setup.tug})
    return {
        "patient": patient,
        "performer": "Practitioner/pt-scenarios",
        "effective": iso(at),
        "kind": "initial",
        "ageYears": 64,
        "referralConditions": [{"kind": "stroke", "text": "Left MCA ischaemic stroke", "onset": "2026-06"}],
        "pain": setup.pain,
        "balance": balance,
        "strength": [{"muscleGroup": "knee-extensors", "side": "right", "grade": "3"}],
    }


class Patient:
    """One patient's course: an evaluation, a reviewed and activated plan, then the scenario's steps."""

    def __init__(self, clinic: Clinic, setup: Setup) -> None:
        self.clinic = clinic
        self.setup = setup
        self.id = f"scn-{uuid.uuid4().hex[:10]}"
        self.day0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=120)
        self.last_end: datetime = self.day0
        self.last_session: str | None = None
        self.last: list[dict[str, Any]] = []  # the decisions of the last step
        self.gateway = Gateway(clinic.api, self.id)
        self._emg_devices: dict[tuple[str, ...], str] = {}
        self.open_streams: list[str] = []
        self.plan_id = self._draft_and_activate()

    # -- plumbing ------------------------------------------------------------------------------------------

    @property
    def urls(self) -> Any:
        return self.clinic.api.urls

    def call(self, method: str, url: str, status: int | tuple[int, ...], what: str, **kw: Any) -> Any:
        return self.clinic.call(method, url, status, what, **kw)

    def settle(self) -> None:
        self.clinic.quiet.wait()

    def plan(self) -> dict[str, Any]:
        body: dict[str, Any] = self.call("GET", f"{self.urls.plan}/plans/{self.plan_id}", 200, "the plan")
        return body

    def care_plan(self) -> dict[str, Any]:
        """The current CarePlan as an EHR reads it."""
        body: dict[str, Any] = self.call(
            "GET", f"{self.urls.plan}/fhir/CarePlan/{self.plan_id}", 200, "the CarePlan"
        )
        return body

    def activity(self, pattern: str | None = None) -> dict[str, Any]:
        return activity_state(self.plan(), pattern or self.setup.patterns[0])

    def tasks(self, status: str = "requested") -> list[dict[str, Any]]:
        """The FHIR Tasks asking the therapist about this patient, as an EHR reads them."""
        bundle = self.call(
            "GET",
            f"{self.urls.plan}/fhir/Task",
            200,
            "the therapist's Tasks",
            params={"patient": f"Patient/{self.id}", "status": status},
        )
        return [e["resource"] for e in bundle.get("entry", [])]

    def awaiting(self) -> list[str]:
        """Streams of logged sessions whose metrics the plan still waits for (none once it has judged)."""
        return [
            stream
            for a in self.plan()["state"]["activities"]
            for r in a["log"]
            if not r.get("evidenceTimedOut")
            for stream in r.get("streams", [])
            if stream not in r.get("streamsComplete", [])
        ]

    def plan_tasks(self) -> list[dict[str, Any]]:
        """The plan's questions for the therapist (``GET /plans/{id}/tasks``)."""
        found: list[dict[str, Any]] = self.call(
            "GET", f"{self.urls.plan}/plans/{self.plan_id}/tasks", 200, "the plan's tasks"
        )
        return found

    def _step(self, work: Any) -> None:
        """Run ``work`` and keep the decisions of the CarePlan versions it produced."""
        before = int(self.plan()["version"])
        work()
        self.settle()
        history = self.plan()["state"]["history"]
        self.last = [
            {**d, "version": change["version"]}
            for change in history
            if change["version"] > before
            for d in change["decisions"]
        ]

    # -- evaluation, draft, review, activation -------------------------------------------------------------

    def _draft_and_activate(self) -> str:
        plan_url = f"{self.urls.plan}/plans"
        self.call(
            "POST",
            f"{self.urls.evaluation}/evaluations",
            (200, 201),
            "the initial evaluation",
            json=evaluation_body(self.id, self.day0, self.setup),
        )
        self.settle()
        plans = self.call("GET", plan_url, 200, "plans", params={"patient": self.id})
        if not plans:
            raise JourneyError(f"no plan drafted for {self.id}")
        plan_id = str(plans[0]["id"])
        base = f"{plan_url}/{plan_id}"
        state = self.call("GET", base, 200, "the draft")["state"]
        wanted = set(self.setup.patterns)
        for a in state["activities"]:
            if a["pattern"] not in wanted:
                self.call(
                    "DELETE",
                    f"{base}/activities/{a['id']}",
                    200,
                    "removing an exercise",
                    json={"reason": "not part of this scenario"},
                )
        present = {a["pattern"] for a in state["activities"]}
        for pattern in self.setup.patterns:
            if pattern not in present:
                body: dict[str, Any] = {"pattern": pattern, "reason": "scenario exercise"}
                if self.clinic.sided(pattern):
                    body["side"] = "right"
                self.call("POST", f"{base}/activities", (200, 201), f"adding {pattern}", json=body)
        if self.setup.rules:
            self.call(
                "PUT",
                f"{base}/rules",
                200,
                "plan rules",
                json={"rules": dict(self.setup.rules), "reason": "scenario rules"},
            )
        for pattern, rules in (self.setup.pattern_rules or {}).items():
            self.call(
                "PUT",
                f"{base}/rules/patterns/{pattern}",
                200,
                f"{pattern} rules",
                json={"rules": rules, "reason": "scenario rules"},
            )
        self.call("POST", f"{base}/activate", 200, "activation", json={"reason": "reviewed"})
        self.settle()
        return plan_id

    # -- therapist edits -----------------------------------------------------------------------------------

    def override(self, o: Override) -> None:
        body: dict[str, Any] = {"reason": "therapist's judgement"}
        if o.levels is not None:
            body["levels"] = dict(o.levels)
        if o.stage is not None:
            body["stage"] = o.stage
        if o.dose is not None:
            body["dose"] = dict(o.dose)
        aid = self.activity(o.pattern)["id"]
        url = f"{self.urls.plan}/plans/{self.plan_id}/activities/{aid}/override"
        self._step(lambda: self.call("POST", url, 200, "an override", json=body))

    def waive(self, w: Waive) -> None:
        """``PUT /plans/{id}/waivers`` replaces the plan's waivers: the ones in force plus this one."""
        url = f"{self.urls.plan}/plans/{self.plan_id}/waivers"
        keep = ("pattern", "criterion", "muscle", "reason")
        waivers = [{k: v[k] for k in keep if v.get(k)} for v in self.call("GET", url, 200, "waivers")]
        waiver: dict[str, Any] = {
            "pattern": w.pattern or self.setup.patterns[0],
            "criterion": w.criterion,
            "reason": w.reason,
        }
        if w.muscle is not None:
            waiver["muscle"] = w.muscle
        body = {"waivers": [*waivers, waiver], "reason": w.reason}
        self._step(lambda: self.call("PUT", url, 200, "a waiver", json=body))

    def answer_task(self, approve: bool, reason: str) -> None:
        open_ = [t for t in self.plan_tasks() if t["status"] == "requested"]
        if not open_:
            raise AssertionError(f"no open task to answer; tasks: {self.plan_tasks()}")
        verb = "approve" if approve else "reject"
        url = f"{self.urls.plan}/plans/{self.plan_id}/tasks/{open_[-1]['id']}/{verb}"
        self._step(lambda: self.call("POST", url, 200, f"{verb} a task", json={"reason": reason}))

    # -- sessions ------------------------------------------------------------------------------------------

    def _start_session(self, start: datetime) -> str:
        body = {
            "patient": self.id,
            "carePlan": f"CarePlan/{self.plan_id}",
            "practitioner": "Practitioner/pt-scenarios",
            "start": iso(start),
        }
        resp = self.clinic.api.http.post(
            f"{self.urls.sessions}/sessions", json=body, headers=self.clinic.api.clinician
        )
        created = self.clinic.api.expect(resp, 201, "a session").json()
        return str(created["id"])

    def _emg_device(self, channels: Sequence[str]) -> str:
        """An EMG sensor on the clinic hub declaring exactly these channels (mV, 1 kHz); one per layout."""
        key = tuple(channels)
        if not self.gateway.devices:
            self.gateway.register_devices()
        if key not in self._emg_devices:
            role = "emg:" + ",".join(key)
            props: list[dict[str, Any]] = [
                {
                    "type": {"coding": [{"system": PROPERTY_SYSTEM, "code": "sampling-rate"}]},
                    "valueQuantity": [{"value": 1000, "unit": "Hz", "system": UCUM, "code": "Hz"}],
                }
            ]
            props += [
                {
                    "type": {"coding": [{"system": PROPERTY_SYSTEM, "code": "channel"}]},
                    "valueCode": [{"text": ch}],
                    "valueQuantity": [{"unit": "mV", "system": UCUM, "code": "mV"}],
                }
                for ch in key
            ]
            self.gateway.register(
                role,
                {
                    "deviceName": [{"name": f"Surface EMG {'/'.join(key)}", "type": "user-friendly-name"}],
                    "type": {"coding": [{"system": KIND_SYSTEM, "code": "emg-sensor"}]},
                    "parent": {"reference": f"Device/{self.gateway.devices['hub']}"},
                    "property": props,
                },
            )
            self._emg_devices[key] = role
        return self._emg_devices[key]

    def _open_emg(self, trial: EmgTrial, session: str, start: datetime) -> str:
        role = self._emg_device([b.channel for b in trial.bursts])
        binding = self.gateway.open_stream(
            role,
            trial.recording(),
            session=session,
            protocol=trial.protocol(),
            start=start,
            mvc=dict(trial.mvc) if trial.mvc is not None else None,
        )
        return str(binding["id"])

    def _balance(self, trial: BalanceTrial, session: str, start: datetime) -> str:
        if not self.gateway.devices:
            self.gateway.register_devices()
        vision, surface = BALANCE_CONDITIONS[trial.condition]
        rec = scaled_balance(
            self.clinic.data_dir, trial.condition, sway_scale=trial.sway_scale, seconds=trial.seconds
        )
        closed = self.gateway.stream(
            "balance",
            rec,
            session=session,
            protocol={"vision": vision, "surface": surface, "task": "quiet standing"},
            start=start,
        )
        return str(closed["id"])

    def session(self, s: Session) -> None:
        self._step(lambda: self._session(s))

    def _session(self, s: Session) -> None:
        activity = self.activity(s.pattern)
        dose = activity["dose"]
        start = self.last_end + s.after
        end = start + timedelta(minutes=45)
        sid = self._start_session(start)
        session_url = f"{self.urls.sessions}/sessions/{sid}"
        streams: list[str] = []
        late_close: list[str] = []
        if s.emg is not None:
            stream = self._open_emg(s.emg, sid, start + timedelta(minutes=5))
            streams.append(stream)
            if s.emg.close_late:
                late_close.append(stream)
            else:
                self.gateway.close_stream(stream)
        if s.balance is not None:
            streams.append(self._balance(s.balance, sid, start + timedelta(minutes=15)))
        reps = s.reps if s.reps is not None else dose["reps"]
        exercise: dict[str, Any] = {
            "activity": activity["id"],
            "sets": dose["sets"],
            "reps": [reps] * dose["sets"],
            "targetReps": dose["reps"],
            "loadKg": s.load_kg if s.load_kg is not None else (dose.get("loadKg") or 0.0),
            "assistance": "none",
            "cues": ["tactile-cueing"] if s.with_feedback else [],
            "level": activity["levels"],
            "quality": s.quality,
            "painBefore": s.pain_before,
            "painAfter": s.pain_after,
            "withFeedback": s.with_feedback,
            "deviceStreams": streams,
        }
        if s.self_rating is not None:
            exercise["selfRating"] = s.self_rating
        if s.rom is not None:
            exercise["rom"] = {"valueDeg": s.rom, "method": "goniometer"}
        if s.retention_attempt is not None:
            exercise["retentionAttempt"] = s.retention_attempt
        if s.dual_task_trial is not None:
            exercise["dualTask"] = True
            exercise["dualTaskTrial"] = s.dual_task_trial.body()
        self.call(
            "POST", f"{session_url}/exercises/batch", 201, "the exercises", json={"exercises": [exercise]}
        )
        self.call("POST", f"{session_url}/close", 200, "closing the session", json={"end": iso(end)})
        self.last_end = end
        self.last_session = sid
        self.settle()
        if s.pain24h is not None:
            self._symptoms(s.pain24h, s.flare, recorded=end + timedelta(hours=24))
            self.settle()
        self.open_streams.extend(late_close)
        if s.late_emg is not None:
            later = self._open_emg(s.late_emg, sid, start + timedelta(minutes=30))
            self.gateway.close_stream(later)

    def close_open_streams(self) -> None:
        def close() -> None:
            while self.open_streams:
                self.gateway.close_stream(self.open_streams.pop(0))

        self._step(close)

    def _symptoms(self, pain24h: int, flare: bool, *, recorded: datetime) -> None:
        self.call(
            "POST",
            f"{self.urls.sessions}/sessions/{self.last_session}/symptoms",
            201,
            "the 24-hour response",
            json={"pain24h": pain24h, "flare": flare, "recordedAt": iso(recorded)},
        )

    def symptoms(self, pain24h: int, flare: bool, *, hours: float = 24.0) -> None:
        recorded = self.last_end + timedelta(hours=hours)
        self._step(lambda: self._symptoms(pain24h, flare, recorded=recorded))

    # -- checking ------------------------------------------------------------------------------------------

    def check(self, expect: Expect) -> None:
        shown = json.dumps([_brief(d) for d in self.last], indent=1)
        if expect.settled:
            waiting = self.awaiting()
            assert not waiting, f"the plan still waits for the metrics of streams {waiting}"
        # One change at a time: a step never advances an exercise on two dimensions.
        advances = [d["activity"] for d in self.last if d["kind"] == "advance"]
        assert len(advances) == len(set(advances)), f"two advances of one exercise in a step: {shown}"
        for kind in expect.absent:
            made = [d for d in self.last if d["kind"] == kind]
            assert not made, f"the last step made a '{kind}' decision it should not have: {shown}"
        if expect.kind is not None:
            decision = self._matching(expect)
            assert decision is not None, (
                f"no '{expect.kind}' decision with reason containing {expect.reason} "
                f"(dimension {expect.dimension}, to {expect.to}); the last step decided: {shown}"
            )
            self._check_criteria(decision, expect)
            if expect.event:
                self._check_event(decision, expect)
            if expect.cites_observation:
                cited = [e for e in decision.get("evidence", []) if str(e).startswith("Observation/")]
                assert cited, f"the decision cites no Observation: {json.dumps(decision, indent=1)}"
        if expect.careplan:
            text = json.dumps(self.care_plan()).lower()
            missing = [t for t in expect.careplan if t.lower() not in text]
            assert not missing, f"the CarePlan does not say {missing}"

    def _matching(self, expect: Expect) -> dict[str, Any] | None:
        def fits(text: str) -> bool:
            return all(t.lower() in text.lower() for t in expect.reason)

        if expect.kind == "task":
            # A question for the therapist: the decision names a Task an EHR can read (status requested).
            tasks = {f"Task/{t['id']}" for t in self.tasks()}
            for d in self.last:
                if d.get("task") in tasks and fits(d["reason"]):
                    return d
            return None
        for d in self.last:
            if d["kind"] != expect.kind or not fits(d["reason"]):
                continue
            if expect.dimension is not None and d.get("dimension") != expect.dimension:
                continue
            if expect.to is not None and d.get("to") != expect.to:
                continue
            return d
        return None

    def plan_events(self) -> list[dict[str, Any]]:
        """Every plan event about this patient so far (read from the start of the plan topic, no group)."""
        reader = KafkaConsumer(bootstrap_servers=self.clinic.bootstrap, group_id=None)
        try:
            parts = [TopicPartition(PLAN_EVENTS, p) for p in sorted(reader.partitions_for_topic(PLAN_EVENTS))]
            reader.assign(parts)
            reader.seek_to_beginning(*parts)
            ends = reader.end_offsets(parts)
            found: list[dict[str, Any]] = []

            def read_to_end() -> bool:
                for records in reader.poll(timeout_ms=200).values():
                    for r in records:
                        event = CloudEvent.from_bytes(r.value)
                        if event.subject == self.id:
                            found.append({"type": event.type, **event.data})
                return all(reader.position(tp) >= ends[tp] for tp in parts)

            wait_for(read_to_end, what="the plan topic read to its end")
            return found
        finally:
            reader.close()

    def _check_event(self, decision: Mapping[str, Any], expect: Expect) -> None:
        """The plan event of the decision's version carries its criteria too (what other services read)."""
        events = [e for e in self.plan_events() if e.get("versionId") == decision["version"]]
        assert events, f"no plan event for CarePlan version {decision['version']}"
        self._check_criteria({"criteria": [c for e in events for c in e.get("criteria", [])]}, expect)

    @staticmethod
    def _check_criteria(decision: Mapping[str, Any], expect: Expect) -> None:
        criteria = list(decision.get("criteria") or [])
        for label, status in expect.criteria.items():
            tokens = label.lower().split()
            found = [c for c in criteria if all(t in json.dumps(c).lower() for t in tokens)]
            assert found, f"the decision lists no criterion '{label}': {json.dumps(decision, indent=1)}"
            got = {str(c.get("status")) for c in found}
            assert status in got, f"criterion '{label}' is {got}, expected {status}"
        if expect.evidence_sources:
            judged = [
                c for c in criteria if c.get("criterion") in MEASURED and c.get("status") in ("pass", "fail")
            ]
            assert judged, f"the decision judges no measured criterion: {json.dumps(decision, indent=1)}"
            unsourced = [c for c in judged if not str(c.get("source", "")).startswith("Observation/")]
            assert not unsourced, f"measured criteria without their source Observation: {unsourced}"
