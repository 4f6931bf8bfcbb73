"""One patient's course through the public APIs, as a clinic and an EHR live it (issue 7).

``Journey`` plays the course against a running platform (``make run``, or the test fixture): an initial
evaluation; the drafted plan, reviewed and activated; sessions logged through the sessions service while EMG
and balance recordings from ``/work/shared/data/sensors`` stream through the device gateway (FHIR Devices, a
stream binding per recording bound to the patient and the session's Encounter, frames pushed with the clinic
hub's device credentials, the stream closed); a symptomatic session that holds progress; progressions along
several dimensions; competence stages climbing to mastery; a re-assessment whose proposal the therapist
accepts.

After each step it reads what an EHR sees through the one FHIR base URL (CarePlan and its ``_history``,
Observations of the evaluation and the device metrics, Encounters/Procedures, Goals) and records a
:class:`Step`: what happened, which rule fired (the plan-change extension of every new CarePlan version),
which stage each pattern reached and the elapsed time. Events are asynchronous: every wait polls with a
timeout.

``python -m relearn.devtools.journey`` (``make demo``) runs the course against ``make run`` and prints the
timeline.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx

from relearn.devtools.platform import PlatformSettings

EXT_PROGRESSION = "https://relearn.health/fhir/StructureDefinition/exercise-progression"
EXT_PLAN_CHANGE = "https://relearn.health/fhir/StructureDefinition/plan-change"
CS_STAGE = "https://relearn.health/fhir/CodeSystem/competence-stage"
SID_DEVICE_STREAM = "https://relearn.health/fhir/sid/device-stream"
SID_JOURNEY_DEVICE = "https://relearn.health/fhir/sid/journey-device"

# Competence stages, lowest first (the plan's CodeSystem competence-stage).
STAGES = (
    "unconscious-incompetence",
    "conscious-incompetence",
    "conscious-competence",
    "unconscious-competence",
)

# Which recording of subject 1 (Santos & Duarte 2016 public balance dataset) goes with which sensory
# condition of the standing-balance proprioception ladder: eyes open/closed on a firm surface or on foam.
BALANCE_TRIALS: tuple[tuple[str, str, str], ...] = (
    ("BDS00001.txt", "open", "firm"),
    ("BDS00004.txt", "closed", "firm"),
    ("BDS00007.txt", "open", "foam"),
    ("BDS00010.txt", "closed", "foam"),
)
# UCI lower-limb EMG, normal subject 5 (columns RF, BF, VM, ST in mV at 1 kHz): the agonist/antagonist pair of
# a knee extension, vastus medialis and biceps femoris, for 4 s (each 1 s window gives metrics too).
EMG_RECORDING = "uci_lowerlimb_5Npie.txt"
EMG_COLUMNS = (2, 1)
EMG_CHANNELS = ("vastus-medialis-right", "biceps-femoris-right")
EMG_RATE_HZ = 1000.0
EMG_SECONDS = 4
BALANCE_RATE_HZ = 100.0
# The plan's metric kinds and the catalogue's mastery criterion on each (an upper limit).
CRITERIA: dict[str, tuple[str, str]] = {
    "sway-area": ("swayAreaMaxCm2", "cm2"),
    "sway-velocity": ("swayVelocityMaxCmS", "cm/s"),
    "emg-onset-latency": ("emgOnsetLatencyMaxMs", "ms"),
    "co-contraction": ("coContractionMaxPct", "%"),
}
FRAMES_PER_REQUEST = 20

T = TypeVar("T")


def default_data_dir() -> Path:
    """``../shared/data/sensors`` next to the repository (``RELEARN_SENSOR_DATA`` overrides it)."""
    env = os.environ.get("RELEARN_SENSOR_DATA")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "sensors"
        if (parent / "pyproject.toml").exists() and candidate.exists():
            return candidate
    return Path("/work/shared/data/sensors")


# --------------------------------------------------------------------------------------------- platform URLs


@dataclass(frozen=True)
class PlatformUrls:
    """Where the platform answers: the one FHIR base URL, the issuer, each service's REST base."""

    fhir_base: str
    issuer: str
    evaluation: str
    plan: str
    sessions: str
    device_gateway: str

    @classmethod
    def from_settings(cls, settings: PlatformSettings | None = None) -> PlatformUrls:
        s = settings or PlatformSettings()

        def base(port: int) -> str:
            return f"http://{s.host}:{port}"

        return cls(
            fhir_base=s.fhir_base_url,
            issuer=s.issuer_url,
            evaluation=base(s.evaluation_port),
            plan=base(s.plan_port),
            sessions=base(s.sessions_port),
            device_gateway=base(s.device_gateway_port),
        )


# ------------------------------------------------------------------------------------------ what a step gives


@dataclass(frozen=True)
class PlanChange:
    """The plan-change extension of one CarePlan version: why it changed (the rule that fired)."""

    version: int
    kind: str
    reason: str
    evidence: tuple[str, ...]

    @classmethod
    def of(cls, care_plan: Mapping[str, Any]) -> PlanChange:
        version = int(care_plan["meta"]["versionId"])
        kind, reason, evidence = "", "", []
        for ext in care_plan.get("extension", []):
            if ext.get("url") != EXT_PLAN_CHANGE:
                continue
            for part in ext.get("extension", []):
                if part["url"] == "kind":
                    kind = str(part["valueCode"])
                elif part["url"] == "reason":
                    reason = str(part["valueString"])
                elif part["url"] == "evidence":
                    evidence.append(str(part["valueReference"]["reference"]))
        return cls(version, kind, reason, tuple(evidence))


@dataclass(frozen=True)
class Exercise:
    """One CarePlan activity as an EHR reads it: pattern, side, levels per dimension, competence stage."""

    activity: str
    pattern: str
    side: str | None
    stage: str
    levels: dict[str, int]
    status: str | None


def exercises(care_plan: Mapping[str, Any]) -> dict[str, Exercise]:
    """Every exercise of a CarePlan version by pattern code (from the exercise-progression extension)."""
    out: dict[str, Exercise] = {}
    for activity in care_plan.get("activity", []):
        pattern, side, levels = "", None, {}
        for ext in activity.get("extension", []):
            if ext.get("url") != EXT_PROGRESSION:
                continue
            for part in ext.get("extension", []):
                if part["url"] == "pattern":
                    pattern = str(part["valueCoding"]["code"])
                elif part["url"] == "side":
                    side = str(part["valueCode"])
                elif part["url"] == "level":
                    sub = {p["url"]: p for p in part["extension"]}
                    levels[str(sub["dimension"]["valueCoding"]["code"])] = int(sub["step"]["valueInteger"])
        stage = ""
        for concept in activity.get("outcomeCodeableConcept", []):
            for coding in concept.get("coding", []):
                if coding.get("system") == CS_STAGE:
                    stage = str(coding["code"])
        status = (activity.get("detail") or {}).get("status")
        out[pattern] = Exercise(str(activity.get("id", "")), pattern, side, stage, levels, status)
    return out


@dataclass
class Step:
    """One step of the course and what an EHR reads after it."""

    name: str
    summary: str
    started_s: float  # since the journey began
    duration_s: float
    care_plan: dict[str, Any] | None = None  # the current CarePlan (GET CarePlan/<id>)
    versions: list[dict[str, Any]] = field(default_factory=list)  # CarePlan versions this step produced
    changes: list[PlanChange] = field(default_factory=list)  # their plan-change extensions, oldest first
    stages: dict[str, str] = field(default_factory=dict)  # pattern -> competence stage after the step
    levels: dict[str, dict[str, int]] = field(default_factory=dict)  # pattern -> dimension -> step
    observations: list[dict[str, Any]] = field(default_factory=list)  # the step's own (evaluation/session)
    device_metrics: list[dict[str, Any]] = field(default_factory=list)  # device-metric Observations
    encounter: dict[str, Any] | None = None
    procedures: list[dict[str, Any]] = field(default_factory=list)
    goals: list[dict[str, Any]] = field(default_factory=list)
    session: str | None = None  # the Encounter id of a session step
    streams: list[dict[str, Any]] = field(default_factory=list)  # the gateway's stream bindings, closed
    # pattern -> the device criteria the plan judged this session on, e.g. "sway-area 0.94 cm2 <= 10"
    device_checks: dict[str, list[str]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # step-specific: responses of the domain APIs

    @property
    def rules(self) -> list[str]:
        return [f"v{c.version} {c.kind}: {c.reason}" for c in self.changes]

    def metric_codes(self) -> set[str]:
        return {c["code"] for o in self.device_metrics for c in o["code"]["coding"]}


def goal_achievement(goal: Mapping[str, Any]) -> str | None:
    """A Goal's achievementStatus code (in-progress, improving, achieved, ...)."""
    for coding in (goal.get("achievementStatus") or {}).get("coding", []):
        return str(coding.get("code"))
    return None


# ------------------------------------------------------------------------------------------------ recordings


@dataclass(frozen=True)
class Recording:
    """Samples of one sensor recording, row-major (``rows[i][c]``), with its channel layout."""

    stream_type: str
    rate_hz: float
    channels: tuple[tuple[str, str], ...]  # (name, unit)
    rows: list[list[float]]


def _numeric_rows(path: Path, columns: Sequence[int]) -> list[list[float]]:
    rows: list[list[float]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) <= max(columns):
                continue
            try:
                rows.append([float(parts[c]) for c in columns])
            except ValueError:
                continue  # a header line
    return rows


def balance_recording(data_dir: Path, proprioception: int) -> tuple[Recording, str, str]:
    """The centre-of-pressure trial for a proprioception step: (recording, vision, surface)."""
    name, vision, surface = BALANCE_TRIALS[min(proprioception, len(BALANCE_TRIALS) - 1)]
    rows = _numeric_rows(data_dir / "balance" / name, (7, 8))  # COPx[cm], COPy[cm]
    return Recording("cop", BALANCE_RATE_HZ, (("x", "cm"), ("y", "cm")), rows), vision, surface


def emg_recording(data_dir: Path, seconds: int = EMG_SECONDS) -> Recording:
    rows = _numeric_rows(data_dir / "emg" / EMG_RECORDING, EMG_COLUMNS)
    return Recording(
        "emg", EMG_RATE_HZ, tuple((c, "mV") for c in EMG_CHANNELS), rows[: int(seconds * EMG_RATE_HZ)]
    )


# ------------------------------------------------------------------------------------------------ the course


class JourneyError(RuntimeError):
    """A call answered unexpectedly or a wait timed out; the message says which and shows the answer."""


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class Journey:
    """One patient's course. Use as a context manager; call the steps in order, or :meth:`run` for all."""

    def __init__(
        self,
        urls: PlatformUrls,
        *,
        patient: str | None = None,
        data_dir: Path | None = None,
        timeout_s: float = 30.0,
        with_devices: bool | None = None,
        on_step: Callable[[Step], None] | None = None,
        client_id: str = "relearn-dev",
        client_secret: str = "dev-secret",
        ehr_client: tuple[str, str] = ("ehr-demo", "ehr-demo-secret"),
        device_client: tuple[str, str] = ("device-gateway-dev", "device-gateway-secret"),
    ) -> None:
        self.urls = urls
        self.patient = patient or f"journey-{uuid.uuid4().hex[:8]}"
        self.data_dir = data_dir or default_data_dir()
        self.timeout_s = timeout_s
        self.on_step = on_step
        self._client_auth = (client_id, client_secret)
        self._ehr_auth = ehr_client
        self._device_auth = device_client
        self.http = httpx.Client(timeout=30.0)
        self._tokens: dict[tuple[str, str, str | None], str] = {}
        self.with_devices = with_devices
        # The course happens in the recent past: day 0 is the initial evaluation, a session every 2 days.
        self.day0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=30)
        self.t0 = time.monotonic()
        self.steps: list[Step] = []
        self.plan_id: str | None = None
        self.activities: dict[str, str] = {}  # pattern -> activity id
        self.sessions_logged = 0
        self.seen_versions = 0
        self.devices: dict[str, str] = {}  # role (hub, emg, balance) -> Device id
        self.evaluations: list[str] = []
        self._mastery: dict[str, dict[str, Any]] = {}

    # -- plumbing --------------------------------------------------------------------------------------------

    def __enter__(self) -> Journey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _token(self, auth: tuple[str, str], scope: str, device: str | None = None) -> str:
        key = (auth[0], scope, device)
        if key not in self._tokens:
            data = {"grant_type": "client_credentials", "scope": scope}
            if device:
                data["device"] = device
            resp = self.http.post(f"{self.urls.issuer}/token", data=data, auth=auth)
            self._expect(resp, 200, f"a token for {auth[0]}")
            self._tokens[key] = str(resp.json()["access_token"])
        return self._tokens[key]

    @property
    def clinician(self) -> dict[str, str]:
        """The clinic's app / backend: reads and writes everything (relearn-dev)."""
        return {"Authorization": f"Bearer {self._token(self._client_auth, 'system/*.read system/*.write')}"}

    @property
    def ehr(self) -> dict[str, str]:
        """An EHR backend that only reads (ehr-demo, system/*.read)."""
        return {"Authorization": f"Bearer {self._token(self._ehr_auth, 'system/*.read')}"}

    def device_headers(self, device: str) -> dict[str, str]:
        """Device credentials: the clinic hub's token carrying its ``device`` claim."""
        token = self._token(self._device_auth, "system/Observation.write", device=device)
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _expect(resp: httpx.Response, status: int | tuple[int, ...], what: str) -> httpx.Response:
        wanted = (status,) if isinstance(status, int) else status
        if resp.status_code not in wanted:
            raise JourneyError(
                f"{what}: {resp.request.method} {resp.request.url} answered {resp.status_code}: "
                f"{resp.text[:2000]}"
            )
        return resp

    def wait(self, what: str, probe: Callable[[], T | None], timeout_s: float | None = None) -> T:
        """Poll ``probe`` until it returns something truthy (events are asynchronous); never a fixed sleep."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        delay = 0.02
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise JourneyError(f"timed out after {timeout_s or self.timeout_s:g}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- FHIR, as an EHR reads it ----------------------------------------------------------------------------

    def fhir_read(self, reference: str) -> dict[str, Any]:
        resp = self._expect(
            self.http.get(f"{self.urls.fhir_base}/{reference}", headers=self.ehr), 200, reference
        )
        body: dict[str, Any] = resp.json()
        return body

    def fhir_search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Every match of a search, following the Bundle's ``next`` links."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self.urls.fhir_base}/{resource_type}"
        query: dict[str, str] | None = {"_count": "100", **params}
        while url:
            resp = self._expect(
                self.http.get(url, params=query, headers=self.ehr), 200, f"{resource_type} search"
            )
            bundle = resp.json()
            out.extend(
                e["resource"]
                for e in bundle.get("entry", [])
                if e.get("search", {}).get("mode", "match") == "match" and "resource" in e
            )
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            query = None
        return out

    def care_plan_history(self) -> dict[int, dict[str, Any]]:
        """Every CarePlan version an EHR can read, by versionId."""
        assert self.plan_id is not None
        url: str | None = f"{self.urls.fhir_base}/CarePlan/{self.plan_id}/_history"
        query: dict[str, str] | None = {"_count": "100"}
        versions: dict[int, dict[str, Any]] = {}
        while url:
            resp = self._expect(self.http.get(url, params=query, headers=self.ehr), 200, "CarePlan history")
            bundle = resp.json()
            for e in bundle.get("entry", []):
                if "resource" in e:
                    versions[int(e["resource"]["meta"]["versionId"])] = e["resource"]
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            query = None
        return versions

    def device_metrics(self, stream: str) -> list[dict[str, Any]]:
        return self.fhir_search("Observation", {"identifier": f"{SID_DEVICE_STREAM}|{stream}"})

    # -- the plan service's domain API -----------------------------------------------------------------------

    def plan(self) -> dict[str, Any]:
        assert self.plan_id is not None
        resp = self.http.get(f"{self.urls.plan}/plans/{self.plan_id}", headers=self.clinician)
        body: dict[str, Any] = self._expect(resp, 200, "the plan").json()
        return body

    def activity_state(self, plan: Mapping[str, Any], pattern: str) -> dict[str, Any]:
        for a in plan["state"]["activities"]:
            if a["pattern"] == pattern:
                result: dict[str, Any] = a
                return result
        raise JourneyError(f"the plan has no {pattern} exercise")

    @staticmethod
    def _record(activity: Mapping[str, Any], session_ref: str) -> dict[str, Any] | None:
        for r in activity.get("log", []):
            if r.get("session") == session_ref:
                record: dict[str, Any] = r
                return record
        return None

    # -- step bookkeeping ------------------------------------------------------------------------------------

    def _finish(
        self, step: Step, *, read_plan: bool = True, then: Callable[[Step], None] | None = None
    ) -> Step:
        if read_plan and self.plan_id is not None:
            current_version = int(self.plan()["version"])
            history = self.wait(
                f"CarePlan/{self.plan_id} version {current_version} on the FHIR base URL",
                lambda: (
                    (h if max(h, default=0) >= current_version else None)
                    if (h := self.care_plan_history())
                    else None
                ),
            )
            new = [history[v] for v in sorted(history) if v > self.seen_versions]
            self.seen_versions = max(history)
            step.versions = new
            step.changes = [PlanChange.of(cp) for cp in new]
            step.care_plan = history[max(history)]
            for pattern, ex in exercises(step.care_plan).items():
                step.stages[pattern] = ex.stage
                step.levels[pattern] = ex.levels
            step.goals = self.fhir_search("Goal", {"patient": f"Patient/{self.patient}"})
        if then is not None:
            then(step)
        step.duration_s = self.elapsed() - step.started_s
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return step

    # -- 1. initial evaluation -------------------------------------------------------------------------------

    def _evaluation_body(self, kind: str, at: datetime) -> dict[str, Any]:
        initial = kind == "initial"
        return {
            "patient": self.patient,
            "performer": "Practitioner/pt-journey",
            "effective": _iso(at),
            "kind": kind,
            "ageYears": 64,
            "referralConditions": [
                {"kind": "stroke", "text": "Left MCA ischaemic stroke", "onset": "2026-06"}
            ]
            if initial
            else [],
            "pain": 2 if initial else 0,
            "balance": [
                {"test": "berg", "value": 38 if initial else 53},
                {
                    "test": "sway-ellipse-area",
                    "vision": "eyes-open",
                    "surface": "firm",
                    "stance": "comfortable",
                    "value": 11.7 if initial else 0.9,
                },
            ],
            "strength": [
                {"muscleGroup": "knee-extensors", "side": "right", "grade": "3" if initial else "5"}
            ],
            "concerns": ["Afraid of falling in the shower"] if initial else [],
            "goals": [
                {
                    "text": "Stand at the kitchen counter without holding on",
                    "target": {"measure": "berg", "value": 50},
                },
                {
                    "text": "Climb the stairs at home",
                    "target": {
                        "measure": "mmt-grade",
                        "muscleGroup": "knee-extensors",
                        "side": "right",
                        "value": 5,
                    },
                },
            ]
            if initial
            else [],
        }

    def initial_evaluation(self) -> Step:
        """POST /evaluations (initial); the plan service drafts a plan from its event."""
        step = Step("initial evaluation", "", self.elapsed(), 0.0)
        resp = self.http.post(
            f"{self.urls.evaluation}/evaluations",
            json=self._evaluation_body("initial", self.day0),
            headers={**self.clinician, "Idempotency-Key": f"{self.patient}-initial"},
        )
        recorded = self._expect(resp, (200, 201), "the initial evaluation").json()
        self.evaluations.append(recorded["evaluation"])
        plans = self.wait(
            f"a plan drafted for {self.patient}",
            lambda: self._expect(
                self.http.get(
                    f"{self.urls.plan}/plans", params={"patient": self.patient}, headers=self.clinician
                ),
                200,
                "plans",
            ).json(),
        )
        self.plan_id = str(plans[0]["id"])
        plan = self.plan()
        self.activities = {a["pattern"]: a["id"] for a in plan["state"]["activities"]}
        panel = self.fhir_read(recorded["evaluation"])
        members = [self.fhir_read(m["reference"]) for m in panel.get("hasMember", [])]
        step.observations = [panel, *members]
        step.data = {"evaluation": recorded, "plan": plan}
        deficits = ", ".join(d.get("code", {}).get("display") or d["measure"] for d in recorded["deficits"])
        step.summary = (
            f"{len(members)} findings in {recorded['evaluation']}; deficits: {deficits}. Plan drafted: "
            f"CarePlan/{self.plan_id} ({plan['status']}) with {', '.join(self.activities)}"
        )
        return self._finish(step)

    # -- 2. review and activate ------------------------------------------------------------------------------

    def review_and_activate(self) -> Step:
        """The therapist varies the balance progression (round-robin) and activates the plan."""
        assert self.plan_id is not None
        step = Step("review and activate", "", self.elapsed(), 0.0)
        if "standing-balance" in self.activities:
            resp = self.http.put(
                f"{self.urls.plan}/plans/{self.plan_id}/rules/patterns/standing-balance",
                json={
                    "rules": {"advance": {"strategy": "round-robin"}},
                    "reason": "vary the balance challenge: one dimension after the other",
                },
                headers=self.clinician,
            )
            self._expect(resp, 200, "the standing-balance rules")
        resp = self.http.post(
            f"{self.urls.plan}/plans/{self.plan_id}/activate",
            json={"reason": "reviewed with the patient"},
            headers=self.clinician,
        )
        activated = self._expect(resp, 200, "activation").json()
        step.data = {"activated": activated}
        if self.with_devices is None:
            self.with_devices = self._gateway_ingests()
        if self.with_devices:
            self._register_devices()
            step.data["devices"] = dict(self.devices)
        devices = (
            f"; devices registered: {', '.join(f'{k} Device/{v}' for k, v in self.devices.items())}"
            if self.devices
            else ""
        )
        step.summary = f"CarePlan/{self.plan_id} is {activated['status']}{devices}"
        return self._finish(step)

    def _gateway_ingests(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            spec = self.http.get(f"{self.urls.device_gateway}/openapi.json").json()
            return "/ingest/frames" in spec.get("paths", {}) and "/streams" in spec.get("paths", {})
        return False

    def _device(self, role: str, body: dict[str, Any]) -> str:
        resource = {
            "resourceType": "Device",
            "identifier": [{"system": SID_JOURNEY_DEVICE, "value": f"{self.patient}-{role}"}],
            "status": "active",
            **body,
        }
        resp = self.http.post(
            f"{self.urls.fhir_base}/Device",
            json=resource,
            headers={**self.clinician, "Content-Type": "application/fhir+json"},
        )
        created = self._expect(resp, (200, 201), f"the {role} Device").json()
        return str(created["id"])

    def _register_devices(self) -> None:
        """The clinic hub and the two sensors it carries, as FHIR Devices (POST /fhir/Device)."""
        hub = self._device(
            "hub",
            {
                "deviceName": [{"name": "Clinic gateway, room 2", "type": "user-friendly-name"}],
                "manufacturer": "Relearn",
            },
        )
        self.devices["hub"] = hub
        for role, name, model in (
            ("emg", "4-channel surface EMG, right thigh", "EMG-4"),
            ("balance", "Force plate (centre of pressure)", "BP-400"),
        ):
            self.devices[role] = self._device(
                role,
                {
                    "deviceName": [{"name": name, "type": "user-friendly-name"}],
                    "modelNumber": model,
                    "parent": {"reference": f"Device/{hub}"},
                },
            )

    # -- 3. sessions -----------------------------------------------------------------------------------------

    def _open_stream(
        self, role: str, recording: Recording, session: str, protocol: dict[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "device": self.devices[role],
            "streamType": recording.stream_type,
            "patient": self.patient,
            "session": session,
            "protocol": protocol,
        }
        if recording.stream_type == "cop":
            body["targets"] = {"swayRadiusMaxCm": 2.0}
        resp = self.http.post(f"{self.urls.device_gateway}/streams", json=body, headers=self.clinician)
        binding: dict[str, Any] = self._expect(resp, 201, f"a {role} stream").json()
        return binding

    def _push(self, role: str, binding: dict[str, Any], recording: Recording, start: datetime) -> None:
        """The hub pushes the recording as 1-second frames, FRAMES_PER_REQUEST per request."""
        per_frame = int(recording.rate_hz)
        frames = []
        for seq, i in enumerate(range(0, len(recording.rows), per_frame)):
            frames.append(
                {
                    "deviceId": self.devices[role],
                    "streamType": recording.stream_type,
                    "streamId": binding["id"],
                    "sequence": seq,
                    "startTime": _iso(start + timedelta(seconds=i / recording.rate_hz)),
                    "samplingRateHz": recording.rate_hz,
                    "channels": [{"name": n, "unit": u} for n, u in recording.channels],
                    "samples": recording.rows[i : i + per_frame],
                }
            )
        headers = self.device_headers(self.devices["hub"])
        for k in range(0, len(frames), FRAMES_PER_REQUEST):
            batch = {"frames": frames[k : k + FRAMES_PER_REQUEST]}
            while True:
                resp = self.http.post(
                    f"{self.urls.device_gateway}/ingest/frames", json=batch, headers=headers
                )
                if resp.status_code != 429:
                    break
                time.sleep(
                    min(float(resp.headers.get("Retry-After", "1")), 5.0)
                )  # the gateway's back-pressure
            result = self._expect(resp, 200, f"{role} frames").json()
            refused = [r for r in result["results"] if r["status"] not in ("accepted", "duplicate")]
            if refused:
                raise JourneyError(f"frames not accepted: {refused}")

    def _close_stream(self, binding: dict[str, Any]) -> dict[str, Any]:
        resp = self.http.post(
            f"{self.urls.device_gateway}/streams/{binding['id']}/close", headers=self.clinician
        )
        closed: dict[str, Any] = self._expect(resp, 200, "closing a stream").json()
        return closed

    def _start_session(self, start: datetime) -> dict[str, Any]:
        body = {
            "patient": self.patient,
            "carePlan": f"CarePlan/{self.plan_id}",
            "practitioner": "Practitioner/pt-journey",
            "start": _iso(start),
        }

        refused: list[str] = []

        def started() -> dict[str, Any] | None:
            resp = self.http.post(f"{self.urls.sessions}/sessions", json=body, headers=self.clinician)
            if resp.status_code == 422:  # the sessions service has not seen the plan's activation yet
                refused[:] = [resp.text[:1000]]
                return None
            created: dict[str, Any] = self._expect(resp, 201, "a session").json()
            return created

        try:
            return self.wait("the sessions service to know the active plan", started)
        except JourneyError as exc:
            raise JourneyError(f"{exc}; the last answer was 422: {refused[-1] if refused else ''}") from None

    def session(
        self,
        *,
        label: str = "",
        feedback: bool = True,
        pain_after: int = 1,
        pain24h: int = 1,
        dual_task_cost: float | None = None,
        quality: int = 3,
        self_rating: int = 3,
    ) -> Step:
        """A clinic session: both exercises at the plan's current level and dose, the recordings streamed
        through the gateway, the session closed, then (a day later) its 24-hour symptom response."""
        assert self.plan_id is not None
        self.sessions_logged += 1
        n = self.sessions_logged
        step = Step(f"session {n}" + (f" ({label})" if label else ""), "", self.elapsed(), 0.0)
        start = self.day0 + timedelta(days=2 * n, hours=1)
        end = start + timedelta(minutes=45)
        plan = self.plan()
        session = self._start_session(start)
        sid = str(session["id"])
        session_ref = f"Encounter/{sid}"
        step.session = sid

        # The recordings, streamed while the patient exercises: the knee EMG first, then the balance trial.
        streams: dict[str, list[str]] = {p: [] for p in self.activities}
        bindings: list[dict[str, Any]] = []
        balance_note = ""
        if self.with_devices:
            if "knee-extension" in self.activities:
                rec = emg_recording(self.data_dir)
                binding = self._open_stream("emg", rec, sid, {"task": "knee extension"})
                self._push("emg", binding, rec, start + timedelta(minutes=5))
                bindings.append(self._close_stream(binding))
                streams["knee-extension"].append(binding["id"])
                # The processor has handled the close once a whole-recording metric is stored: every metric
                # of this stream is then in the gateway's outbox, ahead of the balance trial's.
                self._wait_for_whole_recording(binding["id"], len(rec.rows) / rec.rate_hz)
            if "standing-balance" in self.activities:
                level = self.activity_state(plan, "standing-balance")["levels"].get("proprioception", 0)
                rec, vision, surface = balance_recording(self.data_dir, level)
                binding = self._open_stream(
                    "balance", rec, sid, {"vision": vision, "surface": surface, "task": "quiet standing"}
                )
                self._push("balance", binding, rec, start + timedelta(minutes=20))
                bindings.append(self._close_stream(binding))
                streams["standing-balance"].append(binding["id"])
                balance_note = f", balance eyes {vision} on {surface} surface"
        step.streams = bindings

        exercises_body = []
        for pattern, activity_id in self.activities.items():
            activity = self.activity_state(plan, pattern)
            if activity.get("status", "active") != "active":
                continue
            dose = activity["dose"]
            cues = ["emg-biofeedback" if pattern == "knee-extension" else "balance-board"] if feedback else []
            exercises_body.append(
                {
                    "activity": activity_id,
                    "sets": dose["sets"],
                    "reps": [dose["reps"]] * dose["sets"],
                    "targetReps": dose["reps"],
                    "loadKg": dose.get("loadKg") or 0.0,
                    "assistance": "none",
                    "cues": cues,
                    "level": activity["levels"],
                    "quality": quality,
                    "selfRating": self_rating,
                    "painBefore": 1,
                    "painAfter": pain_after,
                    "withFeedback": feedback,
                    "dualTask": dual_task_cost is not None,
                    "dualTaskCostPct": dual_task_cost,
                    "deviceStreams": streams.get(pattern, []),
                }
            )
        resp = self.http.post(
            f"{self.urls.sessions}/sessions/{sid}/exercises/batch",
            json={"exercises": exercises_body},
            headers=self.clinician,
        )
        self._expect(resp, 201, "the exercises")
        resp = self.http.post(
            f"{self.urls.sessions}/sessions/{sid}/close", json={"end": _iso(end)}, headers=self.clinician
        )
        closed = self._expect(resp, 200, "closing the session").json()

        # The plan service counts the session (session.logged.v1) and, when the metrics arrive, holds them.
        logged = [p for p, a in self.activities.items() if any(e["activity"] == a for e in exercises_body)]

        def counted() -> dict[str, Any] | None:
            p = self.plan()
            ok = all(self._record(self.activity_state(p, pattern), session_ref) for pattern in logged)
            return p if ok else None

        self.wait(f"the plan service to count {session_ref}", counted)
        if bindings:
            self._wait_for_metrics(session_ref, streams)

        # A day later: the 24-hour symptom response.
        resp = self.http.post(
            f"{self.urls.sessions}/sessions/{sid}/symptoms",
            json={"pain24h": pain24h, "flare": False, "recordedAt": _iso(end + timedelta(hours=24))},
            headers=self.clinician,
        )
        self._expect(resp, 201, "the 24-hour response")

        def responded() -> bool:
            p = self.plan()
            return all(
                (r := self._record(self.activity_state(p, pattern), session_ref)) is not None
                and r.get("symptomsAt") is not None
                for pattern in logged
            )

        self.wait(f"the plan service to read the 24-hour response of {session_ref}", responded)

        if bindings:
            step.device_checks = self._device_checks(self.plan(), session_ref)

        # What an EHR reads about the session.
        step.encounter = self.fhir_read(session_ref)
        step.procedures = self.fhir_search("Procedure", {"encounter": session_ref})
        observations = self.fhir_search("Observation", {"encounter": session_ref})
        step.device_metrics = [o for o in observations if "device" in o]
        step.observations = [o for o in observations if "device" not in o]
        step.data = {"session": closed, "exercises": exercises_body, "start": start, "end": end}
        bits = [
            f"{session_ref} {start:%d %b}",
            "with feedback" if feedback else "without feedback",
            f"pain {pain_after}/10 after, {pain24h}/10 at 24 h",
        ]
        if dual_task_cost is not None:
            bits.append(f"dual task (cost {dual_task_cost:g} %)")
        if bindings:
            bits.append(
                f"{len(bindings)} streams ({sum(int(b.get('frames', 0)) for b in bindings)} frames"
                f"{balance_note}) "
                f"-> {len(step.device_metrics)} device-metric Observations"
            )
        step.summary = "; ".join(bits)
        if step.device_checks:
            step.summary += "\n    device criteria: " + "; ".join(
                f"{pattern} {', '.join(checks)}" for pattern, checks in step.device_checks.items()
            )
        return self._finish(step)

    def mastery(self, pattern: str) -> dict[str, Any]:
        """The catalogue's mastery criteria of a pattern (GET /catalogue/{code})."""
        if pattern not in self._mastery:
            resp = self.http.get(f"{self.urls.plan}/catalogue/{pattern}", headers=self.clinician)
            self._mastery[pattern] = dict(self._expect(resp, 200, f"the {pattern} pattern").json()["mastery"])
        return self._mastery[pattern]

    def _device_checks(self, plan: Mapping[str, Any], session_ref: str) -> dict[str, list[str]]:
        """The device metrics the plan holds for the session, per pattern, against the mastery criteria."""
        checks: dict[str, list[str]] = {}
        for pattern in self.activities:
            record = self._record(self.activity_state(plan, pattern), session_ref) or {}
            values: dict[str, list[float]] = {}
            for m in record.get("metrics", []):
                values.setdefault(str(m["kind"]), []).append(float(m["value"]))
            for kind, vs in sorted(values.items()):
                key, unit = CRITERIA.get(kind, ("", ""))
                limit = self.mastery(pattern).get(key) if key else None
                mean = sum(vs) / len(vs)
                text = f"{kind} {mean:.3g} {unit}".rstrip()
                if limit is not None:
                    text += f" <= {limit:g}" if mean <= limit else f" > {limit:g} (not within target)"
                checks.setdefault(pattern, []).append(text)
        return checks

    def _wait_for_whole_recording(self, stream: str, seconds: float) -> None:
        def stored() -> bool:
            for obs in self.device_metrics(stream):
                period = obs.get("effectivePeriod") or {}
                if "start" in period and "end" in period:
                    span = datetime.fromisoformat(period["end"]) - datetime.fromisoformat(period["start"])
                    if span.total_seconds() >= 0.9 * seconds:
                        return True
            return False

        self.wait(f"the whole-recording metrics of stream {stream}", stored)

    def _wait_for_metrics(self, session_ref: str, streams: Mapping[str, list[str]]) -> None:
        """Until the plan holds the session's device metrics: its decisions at the 24-hour response see them.

        Metric events of one patient travel in order on one partition; the balance trial's come last (the EMG
        stream was processed before the trial was closed), so once the plan holds the trial's sway metrics
        it has read every metric of the session. The EHR's copies (the evaluation service's Observations,
        written by another consumer) are awaited too.
        """

        def plan_holds() -> list[str] | None:
            p = self.plan()
            cited: list[str] = []
            for pattern, ids in streams.items():
                if not ids:
                    continue
                record = self._record(self.activity_state(p, pattern), session_ref) or {}
                metrics = record.get("metrics", [])
                if pattern == "standing-balance" and not {"sway-area", "sway-velocity"} <= {
                    m.get("kind") for m in metrics
                }:
                    return None
                cited.extend(str(m["observation"]) for m in metrics if m.get("observation"))
            return cited or None

        cited = self.wait(f"the plan service to hold the device metrics of {session_ref}", plan_holds)

        def readable() -> bool:
            found = {
                f"Observation/{o['id']}"
                for ids in streams.values()
                for stream in ids
                for o in self.device_metrics(stream)
            }
            return set(cited) <= found

        self.wait("the device-metric Observations the plan cites, on the FHIR base URL", readable)

    # -- 4. re-assessment ------------------------------------------------------------------------------------

    def reassessment(self, *, apply: bool = True) -> Step:
        """POST /evaluations (reassessment); the plan keeps a proposal; the therapist applies it."""
        assert self.plan_id is not None
        step = Step("re-assessment", "", self.elapsed(), 0.0)
        at = self.day0 + timedelta(days=2 * self.sessions_logged + 2)
        resp = self.http.post(
            f"{self.urls.evaluation}/evaluations",
            json=self._evaluation_body("reassessment", at),
            headers={
                **self.clinician,
                "Idempotency-Key": f"{self.patient}-reassessment-{len(self.evaluations)}",
            },
        )
        recorded = self._expect(resp, (200, 201), "the re-assessment").json()
        self.evaluations.append(recorded["evaluation"])

        def proposed() -> list[dict[str, Any]] | None:
            resp = self.http.get(f"{self.urls.plan}/plans/{self.plan_id}/proposals", headers=self.clinician)
            found = [
                p
                for p in self._expect(resp, 200, "proposals").json()
                if p["evaluation"] == recorded["evaluation"]
            ]
            return found or None

        proposal = self.wait("the re-assessment's proposal", proposed)[0]
        step.data = {"evaluation": recorded, "proposal": proposal}
        if apply and proposal["status"] == "open":
            resp = self.http.post(
                f"{self.urls.plan}/plans/{self.plan_id}/proposals/{proposal['id']}/apply",
                json={"reason": "re-assessment reviewed with the patient"},
                headers=self.clinician,
            )
            step.data["applied"] = self._expect(resp, 200, "applying the proposal").json()
        panel = self.fhir_read(recorded["evaluation"])
        step.observations = [panel, *(self.fhir_read(m["reference"]) for m in panel.get("hasMember", []))]
        step.summary = (
            f"{recorded['evaluation']} ({len(recorded['deficits'])} deficits left); "
            f"proposal {proposal['status']}: "
            f"{proposal['proposal'].get('reason', '')}" + ("; applied" if "applied" in step.data else "")
        )

        def goals_line(s: Step) -> None:
            achieved = [g["description"]["text"] for g in s.goals if goal_achievement(g) == "achieved"]
            if achieved:
                s.summary += f"; goals achieved: {'; '.join(achieved)}"

        return self._finish(step, then=goals_line)

    # -- the whole course ------------------------------------------------------------------------------------

    def run(self) -> list[Step]:
        """The standard course: 13 steps, ending with mastery of standing balance and a re-assessment."""
        self.initial_evaluation()
        self.review_and_activate()
        self.session(label="self-rating agrees")
        self.session()
        self.session(label="third clean session")
        self.session(label="symptomatic", pain_after=5, pain24h=2)
        self.session(label="retention check, no feedback", feedback=False)
        self.session(feedback=False)
        self.session(label="dual task", feedback=False, dual_task_cost=4.0)
        for _ in range(3):
            self.session(feedback=False)
        self.reassessment()
        return self.steps

    @property
    def wall_time_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    def slowest(self) -> Step:
        return max(self.steps, key=lambda s: s.duration_s)


# ------------------------------------------------------------------------------------------------- printing


def describe(step: Step) -> str:
    """A readable timeline entry: what happened, which rule fired, which stage was reached."""
    lines = [
        f"t+{step.started_s + step.duration_s:6.1f}s ({step.duration_s:4.1f}s)  {step.name}",
        f"    {step.summary}",
    ]
    for change in step.changes:
        lines.append(f"    CarePlan v{change.version} [{change.kind}] {change.reason}")
    if step.stages:
        parts = []
        for pattern, stage in step.stages.items():
            levels = step.levels.get(pattern, {})
            raised = ", ".join(f"{d} {v}" for d, v in levels.items() if v) or "all at level 0"
            parts.append(f"{pattern}: {stage.replace('-', ' ')} ({raised})")
        lines.append("    stage: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    settings = PlatformSettings()
    defaults = PlatformUrls.from_settings(settings)
    parser = argparse.ArgumentParser(
        prog="python -m relearn.devtools.journey",
        description="Play one patient's course against a running platform (make run) and print the timeline.",
    )
    parser.add_argument("--fhir-base", default=defaults.fhir_base)
    parser.add_argument("--issuer", default=defaults.issuer)
    parser.add_argument("--evaluation", default=defaults.evaluation)
    parser.add_argument("--plan", default=defaults.plan)
    parser.add_argument("--sessions", default=defaults.sessions)
    parser.add_argument("--device-gateway", default=defaults.device_gateway)
    parser.add_argument("--patient", default=None, help="patient id (default: a new journey-<hex>)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="sensor recordings (../shared/data/sensors)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each asynchronous step"
    )
    args = parser.parse_args(argv)
    urls = PlatformUrls(
        fhir_base=args.fhir_base,
        issuer=args.issuer,
        evaluation=args.evaluation,
        plan=args.plan,
        sessions=args.sessions,
        device_gateway=args.device_gateway,
    )
    try:
        httpx.get(f"{urls.fhir_base}/metadata", timeout=5.0).raise_for_status()
    except httpx.HTTPError as exc:
        print(
            f"The platform does not answer at {urls.fhir_base} ({exc}). Start it with `make run`.",
            file=sys.stderr,
        )
        return 1

    def show(step: Step) -> None:
        print(describe(step), flush=True)

    with Journey(
        urls, patient=args.patient, data_dir=args.data_dir, timeout_s=args.timeout, on_step=show
    ) as journey:
        print(f"Relearn journey of Patient/{journey.patient} (FHIR base {urls.fhir_base})\n", flush=True)
        try:
            journey.run()
        except JourneyError as exc:
            print(f"\nthe journey stopped: {exc}", file=sys.stderr)
            return 1
        slowest = journey.slowest()
        print(
            f"\n{len(journey.steps)} steps in {journey.wall_time_s:.1f}s; slowest: {slowest.name} "
            f"({slowest.duration_s:.1f}s). An EHR reads it all at {urls.fhir_base} "
            f"(e.g. CarePlan/{journey.plan_id}/_history)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
