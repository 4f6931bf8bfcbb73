"""The course itself: :class:`Journey` and its steps, each followed by what an EHR reads after it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from relearn.devtools.journey.client import Api, Auth, JourneyError, PlatformUrls, iso
from relearn.devtools.journey.evaluations import evaluation_body
from relearn.devtools.journey.gateway import Gateway
from relearn.devtools.journey.plan import PlanService, activity_state, session_record
from relearn.devtools.journey.reading import (
    DISCHARGE_SUMMARY,
    LOINC,
    PROGRESS_NOTE,
    FhirReader,
    Step,
    goal_achievement,
    presented_pdf,
)
from relearn.devtools.journey.recordings import (
    EMG_MVC,
    EMG_PROTOCOL,
    balance_recording,
    default_data_dir,
    emg_recording,
)

T = TypeVar("T")


def dual_task_trial(cost_pct: float) -> dict[str, Any]:
    """A gait-speed trial whose dual-task cost (computed by the sessions service) is ``cost_pct`` %."""
    return {
        "measure": "gait-speed",
        "single": 1.0,
        "dual": round(1.0 - cost_pct / 100, 4),
        "unit": "m/s",
        "lowerIsBetter": False,
    }


BALANCE = "standing-balance"
KNEE = "knee-extension"
# The active knee extension range the therapist measures in each session (the catalogue asks >= 85 deg).
KNEE_ROM_DEG = 95
# The live-feedback limit of the balance trials: the centre of pressure within 2 cm of its mean.
BALANCE_TARGETS = {"swayRadiusMaxCm": 2.0}


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
        ehr_client: Auth = ("ehr-demo", "ehr-demo-secret"),
        device_client: Auth = ("device-gateway-dev", "device-gateway-secret"),
        report_dir: Path | None = None,
    ) -> None:
        self.urls = urls
        self.patient = patient or f"journey-{uuid.uuid4().hex[:8]}"
        self.data_dir = data_dir or default_data_dir()
        self.timeout_s = timeout_s
        self.on_step = on_step
        self.api = Api(
            urls, timeout_s=timeout_s, clinic=(client_id, client_secret), ehr=ehr_client, device=device_client
        )
        self.fhir = FhirReader(self.api)
        self.plans = PlanService(self.api)
        self.gateway = Gateway(self.api, self.patient)
        self.with_devices = with_devices
        # The course happens in the recent past: day 0 is the initial evaluation, a session every 2 days.
        self.day0 = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=30)
        self.t0 = time.monotonic()
        self.steps: list[Step] = []
        self.plan_id: str | None = None
        self.activities: dict[str, str] = {}  # pattern -> activity id
        self.sessions_logged = 0
        self.seen_versions = 0
        self.evaluations: list[str] = []
        # Where the reports' PDFs are written (None: not written).
        self.report_dir = report_dir

    # -- plumbing --------------------------------------------------------------------------------------------

    def __enter__(self) -> Journey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.api.close()

    @property
    def devices(self) -> dict[str, str]:
        """Role (hub, emg, balance) -> Device id, once registered."""
        return self.gateway.devices

    def wait(self, what: str, probe: Callable[[], T | None], timeout_s: float | None = None) -> T:
        return self.api.wait(what, probe, timeout_s)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    # -- what an EHR reads; the plan service's state ---------------------------------------------------------

    def fhir_read(self, reference: str) -> dict[str, Any]:
        return self.fhir.read(reference)

    def fhir_search(self, resource_type: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return self.fhir.search(resource_type, params)

    def care_plan_history(self) -> dict[int, dict[str, Any]]:
        """Every CarePlan version an EHR can read, by versionId."""
        assert self.plan_id is not None
        return self.fhir.history(f"CarePlan/{self.plan_id}")

    def device_metrics(self, stream: str) -> list[dict[str, Any]]:
        return self.fhir.device_metrics(stream)

    def gateway_windows(self, stream: str) -> dict[str, Any]:
        """The window-level metrics of a stream, over the gateway's own API."""
        return self.gateway.windows(stream)

    def plan(self) -> dict[str, Any]:
        assert self.plan_id is not None
        return self.plans.plan(self.plan_id)

    def mastery(self, pattern: str) -> dict[str, Any]:
        return self.plans.mastery(pattern)

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
            step.record_plan(history, self.seen_versions)
            self.seen_versions = max(history)
            step.goals = self.fhir_search("Goal", {"patient": f"Patient/{self.patient}"})
        if then is not None:
            then(step)
        step.duration_s = self.elapsed() - step.started_s
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return step

    def _change_plan(self, method: str, path: str, what: str, reason: str, **body: Any) -> Any:
        """A therapist's change of the plan (``<plan>/<path>``); the reason goes on the CarePlan version."""
        url = f"{self.urls.plan}/plans/{self.plan_id}/{path}"
        return self.api.call(
            method, url, 200, what, json={**body, "reason": reason}, headers=self.api.clinician
        )

    def _evaluate(self, kind: str, at: datetime, key: str, what: str) -> dict[str, Any]:
        """POST /evaluations; the recorded evaluation (its panel reference and deficits)."""
        recorded: dict[str, Any] = self.api.call(
            "POST",
            f"{self.urls.evaluation}/evaluations",
            (200, 201),
            what,
            json=evaluation_body(self.patient, kind, at),
            headers={**self.api.clinician, "Idempotency-Key": key},
        )
        self.evaluations.append(recorded["evaluation"])
        return recorded

    def _panel(self, evaluation: str) -> list[dict[str, Any]]:
        """An evaluation's panel Observation and its members, as an EHR reads them."""
        panel = self.fhir_read(evaluation)
        return [panel, *(self.fhir_read(m["reference"]) for m in panel.get("hasMember", []))]

    # -- 1. initial evaluation -------------------------------------------------------------------------------

    def initial_evaluation(self) -> Step:
        """POST /evaluations (initial); the plan service drafts a plan from its event."""
        step = Step("initial evaluation", "", self.elapsed(), 0.0)
        recorded = self._evaluate("initial", self.day0, f"{self.patient}-initial", "the initial evaluation")
        plans = self.wait(
            f"a plan drafted for {self.patient}",
            lambda: self.api.call(
                "GET",
                f"{self.urls.plan}/plans",
                200,
                "plans",
                params={"patient": self.patient},
                headers=self.api.clinician,
            ),
        )
        self.plan_id = str(plans[0]["id"])
        plan = self.plan()
        self.activities = {a["pattern"]: a["id"] for a in plan["state"]["activities"]}
        step.observations = self._panel(recorded["evaluation"])
        step.data = {"evaluation": recorded, "plan": plan}
        deficits = ", ".join(d.get("code", {}).get("display") or d["measure"] for d in recorded["deficits"])
        step.summary = (
            f"{len(step.observations) - 1} findings in {recorded['evaluation']}; deficits: {deficits}. "
            f"Plan drafted: CarePlan/{self.plan_id} ({plan['status']}) with {', '.join(self.activities)}"
        )
        return self._finish(step)

    # -- 2. review and activate ------------------------------------------------------------------------------

    def review_and_activate(self) -> Step:
        """The therapist varies the balance progression (round-robin) and activates the plan."""
        assert self.plan_id is not None
        step = Step("review and activate", "", self.elapsed(), 0.0)
        if BALANCE in self.activities:
            self._change_plan(
                "PUT",
                f"rules/patterns/{BALANCE}",
                "the standing-balance rules",
                "vary the balance challenge: one dimension after the other",
                rules={"advance": {"strategy": "round-robin"}},
            )
        if KNEE in self.activities:
            # The thigh EMG has vastus medialis and biceps femoris only: the knee's onset criterion (vastus
            # medialis against its synergist vastus lateralis) cannot be measured here: waived, with why.
            self._change_plan(
                "PUT",
                "waivers",
                "the knee's EMG onset waiver",
                "no vastus lateralis electrode in this clinic's thigh EMG",
                waivers=[
                    {
                        "pattern": KNEE,
                        "criterion": "emg-onset-latency",
                        "reason": "no vastus lateralis electrode: the onset of vastus medialis cannot be "
                        "timed "
                        "against its synergist",
                    }
                ],
            )
        activated = self._change_plan("POST", "activate", "activation", "reviewed with the patient")
        step.data = {"activated": activated}
        if self.with_devices is None:
            self.with_devices = self.gateway.ingests()
        if self.with_devices:
            self.gateway.register_devices()
            step.data["devices"] = dict(self.devices)
        devices = (
            f"; devices registered: {', '.join(f'{k} Device/{v}' for k, v in self.devices.items())}"
            if self.devices
            else ""
        )
        step.summary = f"CarePlan/{self.plan_id} is {activated['status']}{devices}"
        return self._finish(step)

    # -- 3. sessions -----------------------------------------------------------------------------------------

    def _start_session(self, start: datetime) -> dict[str, Any]:
        body = {
            "patient": self.patient,
            "carePlan": f"CarePlan/{self.plan_id}",
            "practitioner": "Practitioner/pt-journey",
            "start": iso(start),
        }

        refused: list[str] = []

        def started() -> dict[str, Any] | None:
            resp = self.api.http.post(f"{self.urls.sessions}/sessions", json=body, headers=self.api.clinician)
            if resp.status_code == 422:  # the sessions service has not seen the plan's activation yet
                refused[:] = [resp.text[:1000]]
                return None
            created: dict[str, Any] = self.api.expect(resp, 201, "a session").json()
            return created

        try:
            return self.wait("the sessions service to know the active plan", started)
        except JourneyError as exc:
            raise JourneyError(f"{exc}; the last answer was 422: {refused[-1] if refused else ''}") from None

    def _stream_recordings(
        self, plan: Mapping[str, Any], session: str, start: datetime
    ) -> tuple[list[dict[str, Any]], dict[str, list[str]], str]:
        """The recordings, streamed while the patient exercises: the knee EMG first, then the balance trial.

        (the closed stream bindings, pattern -> stream ids, a note on the balance condition)
        """
        streams: dict[str, list[str]] = {p: [] for p in self.activities}
        bindings: list[dict[str, Any]] = []
        balance_note = ""
        if not self.with_devices:
            return bindings, streams, balance_note
        if KNEE in self.activities:
            rec = emg_recording(self.data_dir)
            closed = self.gateway.stream(
                "emg",
                rec,
                session=session,
                protocol={"task": "knee extension", **EMG_PROTOCOL},
                start=start + timedelta(minutes=5),
                mvc=EMG_MVC,
            )
            bindings.append(closed)
            streams[KNEE].append(closed["id"])
            # The processor has handled the close once a whole-recording metric is stored: every metric of
            # this stream is then in the gateway's outbox, ahead of the balance trial's.
            self._wait_for_whole_recording(closed["id"], rec.seconds)
        if BALANCE in self.activities:
            level = activity_state(plan, BALANCE)["levels"].get("proprioception", 0)
            rec, vision, surface = balance_recording(self.data_dir, level)
            closed = self.gateway.stream(
                "balance",
                rec,
                session=session,
                protocol={"vision": vision, "surface": surface, "task": "quiet standing"},
                start=start + timedelta(minutes=20),
                targets=BALANCE_TARGETS,
            )
            bindings.append(closed)
            streams[BALANCE].append(closed["id"])
            balance_note = f", balance eyes {vision} on {surface} surface"
        return bindings, streams, balance_note

    def _exercises_body(
        self,
        plan: Mapping[str, Any],
        streams: Mapping[str, list[str]],
        *,
        feedback: bool,
        pain_after: int,
        dual_task_cost: float | None,
        quality: int,
        self_rating: int,
        retention: bool = False,
    ) -> list[dict[str, Any]]:
        """Both exercises at the plan's current level and dose, citing their device streams."""
        body = []
        for pattern, activity_id in self.activities.items():
            activity = activity_state(plan, pattern)
            if activity.get("status", "active") != "active":
                continue
            dose = activity["dose"]
            cues = ["emg-biofeedback" if pattern == KNEE else "balance-board"] if feedback else []
            body.append(
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
                    "retentionAttempt": retention,
                    # The range reached, measured with a goniometer: the knee's ROM criterion needs it.
                    **(
                        {"rom": {"valueDeg": KNEE_ROM_DEG, "method": "goniometer"}} if pattern == KNEE else {}
                    ),
                    "dualTask": dual_task_cost is not None,
                    "dualTaskTrial": dual_task_trial(dual_task_cost) if dual_task_cost is not None else None,
                    "deviceStreams": streams.get(pattern, []),
                }
            )
        return body

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
        retention: bool = False,
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
        sid = str(self._start_session(start)["id"])
        session_ref = f"Encounter/{sid}"
        session_url = f"{self.urls.sessions}/sessions/{sid}"
        step.session = sid

        bindings, streams, balance_note = self._stream_recordings(plan, sid, start)
        step.streams = bindings

        exercises_body = self._exercises_body(
            plan,
            streams,
            feedback=feedback,
            pain_after=pain_after,
            dual_task_cost=dual_task_cost,
            quality=quality,
            self_rating=self_rating,
            retention=retention,
        )
        clinician = self.api.clinician
        self.api.call(
            "POST",
            f"{session_url}/exercises/batch",
            201,
            "the exercises",
            json={"exercises": exercises_body},
            headers=clinician,
        )
        closed = self.api.call(
            "POST",
            f"{session_url}/close",
            200,
            "closing the session",
            json={"end": iso(end)},
            headers=clinician,
        )

        # The plan service counts the session (session.logged.v1) and, when the metrics arrive, holds them.
        logged = [p for p, a in self.activities.items() if any(e["activity"] == a for e in exercises_body)]

        def counted() -> dict[str, Any] | None:
            p = self.plan()
            ok = all(session_record(p, pattern, session_ref) for pattern in logged)
            return p if ok else None

        self.wait(f"the plan service to count {session_ref}", counted)
        if bindings:
            self._wait_for_metrics(session_ref, streams)

        # A day later: the 24-hour symptom response.
        self.api.call(
            "POST",
            f"{session_url}/symptoms",
            201,
            "the 24-hour response",
            json={"pain24h": pain24h, "flare": False, "recordedAt": iso(end + timedelta(hours=24))},
            headers=clinician,
        )

        def responded() -> bool:
            p = self.plan()
            return all(
                (r := session_record(p, pattern, session_ref)) is not None and r.get("symptomsAt") is not None
                for pattern in logged
            )

        self.wait(f"the plan service to read the 24-hour response of {session_ref}", responded)
        step.tasks = self._answer_tasks()

        if bindings:
            step.device_checks = self.plans.device_checks(self.plan(), self.activities, session_ref)

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
        if retention:
            bits.append("marked as a feedback-free retention attempt")
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

    def _answer_tasks(self) -> list[dict[str, Any]]:
        """The therapist answers what the engine asked: an advance proposed for a patient at fall risk is
        approved (supervised, with a rail at hand); the answered Tasks."""
        assert self.plan_id is not None
        tasks = self.api.call(
            "GET",
            f"{self.urls.plan}/plans/{self.plan_id}/tasks",
            200,
            "the plan's tasks",
            headers=self.api.clinician,
        )
        answered = []
        for task in tasks:
            if task["status"] != "requested" or task["kind"] != "approve-advance":
                continue
            self._change_plan(
                "POST",
                f"tasks/{task['id']}/approve",
                f"approving Task/{task['id']}",
                "supervised progression agreed with the patient, rail at hand",
            )
            answered.append(task)
        return answered

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
                metrics = (session_record(p, pattern, session_ref) or {}).get("metrics", [])
                if pattern == BALANCE and not {"sway-area", "sway-velocity"} <= {
                    m.get("kind") for m in metrics
                }:
                    return None
                record = session_record(p, pattern, session_ref) or {}
                if not set(ids) <= set(record.get("streamsComplete", [])):
                    return None  # the gateway has not said yet that every metric of the stream is sent
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
        plan_url = f"{self.urls.plan}/plans/{self.plan_id}"
        recorded = self._evaluate(
            "reassessment",
            self.day0 + timedelta(days=2 * self.sessions_logged + 2),
            f"{self.patient}-reassessment-{len(self.evaluations)}",
            "the re-assessment",
        )

        def proposed() -> list[dict[str, Any]] | None:
            proposals = self.api.call(
                "GET", f"{plan_url}/proposals", 200, "proposals", headers=self.api.clinician
            )
            found = [p for p in proposals if p["evaluation"] == recorded["evaluation"]]
            return found or None

        proposal = self.wait("the re-assessment's proposal", proposed)[0]
        step.data = {"evaluation": recorded, "proposal": proposal}
        if apply and proposal["status"] == "open":
            step.data["applied"] = self._change_plan(
                "POST",
                f"proposals/{proposal['id']}/apply",
                "applying the proposal",
                "re-assessment reviewed with the patient",
            )
        step.observations = self._panel(recorded["evaluation"])
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

    # -- 5. the progress report and the discharge summary ----------------------------------------------------

    def _report(self, code: str, what: str) -> dict[str, Any]:
        """The DiagnosticReport of this plan with that LOINC code, once the reports service has written it."""

        def written() -> dict[str, Any] | None:
            found = self.fhir_search(
                "DiagnosticReport", {"patient": f"Patient/{self.patient}", "code": f"{LOINC}|{code}"}
            )
            mine = [r for r in found if {"reference": f"CarePlan/{self.plan_id}"} in r.get("basedOn", [])]
            return mine[-1] if mine else None

        # Drawing a report is CPU work in the reports service's consumer: on a busy machine it takes a
        # while, so this wait is longer than the others.
        return self.wait(what, written, timeout_s=4 * self.timeout_s)

    def _keep_pdf(self, step: Step, report: dict[str, Any], kind: str) -> None:
        step.report = report
        pdf = presented_pdf(report)
        if pdf is not None and self.report_dir is not None:
            self.report_dir.mkdir(parents=True, exist_ok=True)
            step.report_pdf = (self.report_dir / f"{self.patient}-{kind}.pdf").resolve()
            step.report_pdf.write_bytes(pdf)

    def progress_report(self) -> Step:
        """The progress report the re-assessment asked for: a DiagnosticReport (PDF and HTML) an EHR reads."""
        step = Step("progress report", "", self.elapsed(), 0.0)
        report = self._report(PROGRESS_NOTE, "the re-assessment's progress report (DiagnosticReport)")
        self._keep_pdf(step, report, "progress-report")
        step.summary = (
            f"the re-assessment's progress report ({len(report.get('result', []))} Observations drawn)"
        )
        return self._finish(step, read_plan=False)

    def discharge(self) -> Step:
        """POST /plans/<id>/discharge: the CarePlan completed, each Goal achieved or not; the reports service
        writes the discharge summary."""
        step = Step("discharge", "", self.elapsed(), 0.0)
        step.data["discharged"] = self._change_plan(
            "POST", "discharge", "the discharge", "goals reviewed with the patient at discharge"
        )
        report = self._report(DISCHARGE_SUMMARY, "the discharge summary (DiagnosticReport)")
        self._keep_pdf(step, report, "discharge-summary")
        step.summary = f"CarePlan/{self.plan_id} completed; DiagnosticReport/{report['id']}"
        return self._finish(step)

    # -- the whole course ------------------------------------------------------------------------------------

    def run(self) -> list[Step]:
        """The standard course: 15 steps. Standing balance reaches unconscious competence twice (at the first
        load-bearing level, then at the next proprioception level), each advance proposed for this patient at
        fall risk and approved by the therapist; a re-assessment (with its progress report) and the
        discharge (with its discharge summary) close the course."""
        self.initial_evaluation()
        self.review_and_activate()
        self.session(label="self-rating agrees")
        self.session()
        self.session(label="third clean session")
        self.session(label="symptomatic", pain_after=5, pain24h=2)
        self.session(label="retention check, no feedback", feedback=False, retention=True)
        self.session(feedback=False)
        self.session(label="dual task", feedback=False, dual_task_cost=4.0)
        self.session(label="retention check, no feedback", feedback=False, retention=True)
        self.session(label="dual task", feedback=False, dual_task_cost=4.0)
        self.session(feedback=False)
        self.reassessment()
        self.progress_report()
        self.discharge()
        return self.steps

    @property
    def wall_time_s(self) -> float:
        return sum(s.duration_s for s in self.steps)

    def slowest(self) -> Step:
        return max(self.steps, key=lambda s: s.duration_s)
