"""Issue 7: one patient from evaluation to mastery, as an EHR reads it through the one FHIR base URL.

The whole platform runs as ``make run`` starts it (separate processes, its own Tansu broker) on PostgreSQL
(``running_platform``). :class:`relearn.devtools.journey.Journey` plays the course through the public APIs
with real development tokens; sensor recordings from ``../shared/data/sensors`` stream through the device
gateway.
After every step this test checks what an EHR (the read-only ``ehr-demo`` client) sees: CarePlan versions and
their plan-change extension (the rule that fired), competence stages and progression levels, Observations of
the evaluation and of the device metrics, Encounters and Procedures of the sessions, Goals and their
achievement status.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest

from relearn.devtools.journey import (
    STAGES,
    Journey,
    PlatformUrls,
    Step,
    describe,
    exercises,
    goal_achievement,
    presented_pdf,
    report_codes,
)
from relearn.devtools.platform import DEVICE_CLIENT, Platform

BALANCE = "standing-balance"
KNEE = "knee-extension"
# Issue 18: a streamed trial puts at most this many Observations on the FHIR surface.
MAX_OBSERVATIONS_PER_TRIAL = 50
PER_TRIAL: dict[str, list[int]] = {}  # stream type -> Observations of each streamed trial (FHIR search)


@pytest.fixture(scope="module")
def journey(running_platform: Platform) -> Iterator[Journey]:
    # The timeline is printed as the course goes (shown with -s, or with the output of a failure).
    urls = PlatformUrls.from_settings(running_platform.settings)

    def show(step: Step) -> None:
        print(describe(step), flush=True)

    # The clinic hub streams with its own key (a Backend Services device client of Device/relearn-dev-hub).
    hub = running_platform.backend(DEVICE_CLIENT)
    report_dir = running_platform.var / "reports"
    with Journey(
        urls, timeout_s=60, with_devices=True, on_step=show, device_client=hub, report_dir=report_dir
    ) as j:
        yield j


def _kinds(step: Step) -> list[str]:
    return [c.kind for c in step.changes]


def _reasons(step: Step, pattern_name: str = "Static standing balance") -> list[str]:
    return [c.reason for c in step.changes if c.reason.startswith(pattern_name)]


def _about_patient(resource: dict[str, Any], patient: str) -> bool:
    return bool(resource.get("subject", {}).get("reference") == f"Patient/{patient}")


def _codes(observation: dict[str, Any]) -> set[str]:
    return {c["code"] for c in observation["code"]["coding"]}


def _check_session(j: Journey, step: Step) -> None:
    """What an EHR reads about any session: the Encounter, its Procedures, its device-metric Observations."""
    assert step.session is not None and step.encounter is not None
    ref = f"Encounter/{step.session}"
    assert step.encounter["status"] == "finished"
    assert _about_patient(step.encounter, j.patient)
    assert len(step.procedures) == 2, "one Procedure per exercise"
    assert all(p["encounter"]["reference"] == ref and _about_patient(p, j.patient) for p in step.procedures)
    # The 24-hour response and pain/quality scores are Observations of the session too.
    assert step.observations and all(o["encounter"]["reference"] == ref for o in step.observations)

    assert [s["status"] for s in step.streams] == ["closed", "closed"]
    assert all(s["patient"] == j.patient and s["session"] == step.session for s in step.streams)
    assert all(s["frames"] > 0 and not s["gaps"] for s in step.streams)
    by_stream: dict[str, list[dict[str, Any]]] = {}
    for obs in step.device_metrics:
        by_stream.setdefault(obs["identifier"][0]["value"], []).append(obs)
        assert _about_patient(obs, j.patient)
        assert obs["encounter"]["reference"] == ref
        assert obs["device"]["reference"] in {f"Device/{j.devices['emg']}", f"Device/{j.devices['balance']}"}
        assert obs["status"] == "final" and "effectivePeriod" in obs
    [balance] = [s for s in step.streams if s["streamType"] == "force-plate"]
    [emg] = [s for s in step.streams if s["streamType"] == "emg"]
    assert {"sway-ellipse-area", "sway-mean-velocity"} <= {
        c for o in by_stream[balance["id"]] for c in _codes(o)
    }
    emg_codes = {c for o in by_stream[emg["id"]] for c in _codes(o)}
    assert {"emg-rms", "emg-onset-latency", "emg-co-contraction-index"} <= emg_codes
    # One Observation per metric of a trial (issue 18: not one per channel per 1 s window): each streamed
    # trial, counted by FHIR search on its stream identifier, has at most 50 Observations on the FHIR surface.
    for stream in step.streams:
        found = j.fhir.device_metrics(stream["id"])
        assert 0 < len(found) <= MAX_OBSERVATIONS_PER_TRIAL, (stream["id"], len(found))
        PER_TRIAL.setdefault(stream["streamType"], []).append(len(found))
        codes = [c for o in found for c in _codes(o)]
        assert len(codes) == len(set(codes)), "one Observation per metric code of the trial"
        # The trial's set: the exercise's device-set Observation, partOf its Procedure, lists the summaries.
        [the_set] = [o for o in found if "device-set" in _codes(o)]
        assert the_set["partOf"][0]["reference"] in {f"Procedure/{p['id']}" for p in step.procedures}
        members = {m["reference"] for m in the_set.get("hasMember", [])}
        assert {f"Observation/{o['id']}" for o in found if o is not the_set} <= members
    onset = next(o for o in by_stream[emg["id"]] if "emg-onset-latency" in _codes(o))
    [vm_onset] = [c for c in onset["component"] if "vastus-medialis" in c["code"].get("text", "")]
    assert vm_onset["code"]["coding"][0]["code"] == "emg-onset-latency"
    assert vm_onset.get("valueQuantity", {}).get("code", "ms") == "ms"
    # The window series rides inside the summary: one datum per 1 s window of each channel.
    rms = next(o for o in by_stream[emg["id"]] if "emg-rms" in _codes(o))
    series = [c["valueSampledData"] for c in rms["component"] if "valueSampledData" in c]
    assert len(series) == 2 and all(s["period"] == 1000 and len(s["data"].split()) >= 4 for s in series)
    area = next(o for o in by_stream[balance["id"]] if "sway-ellipse-area" in _codes(o))
    assert area["valueQuantity"]["code"] == "cm2"
    # The window-level data stays available over the gateway's own API.
    windows = j.gateway_windows(emg["id"])
    assert windows["total"] >= 4 and windows["windows"][0]["metrics"]


# The report's sections, in order: each is a page heading in the PDF's text layer (and an <h2> of the HTML).
REPORT_SECTIONS = (
    "Summary and goals",
    "Competence stage of each movement pattern",
    "Progressions and regressions",
    "Outcome measures against MCID",
    "Range of motion and strength against goals",
    "Sway ellipses per trial",
    "EMG envelopes against threshold",
    "Adherence calendar",
)


def _check_report(j: Journey, step: Step, codes: set[str], title: str) -> dict[str, Any]:
    """A DiagnosticReport as an EHR reads it over FHIR, and its PDF as a reviewer opens it: rasterised with
    pypdfium2 (PDFium, from PyPI; pdftoppm is not installed here), each section a page with its heading in the
    text layer and a drawing in its plot area."""
    report = step.report
    assert report is not None
    assert j.fhir_read(f"DiagnosticReport/{report['id']}")["id"] == report["id"]
    assert report["status"] == "final" and _about_patient(report, j.patient)
    assert report_codes(report) >= codes
    categories = {(c["system"], c["code"]) for cat in report["category"] for c in cat["coding"]}
    assert ("http://terminology.hl7.org/CodeSystem/v2-0074", "PT") in categories
    assert "effectivePeriod" in report or "effectiveDateTime" in report
    assert report["basedOn"] == [{"reference": f"CarePlan/{j.plan_id}"}]
    results = [r["reference"] for r in report.get("result", [])]
    assert results and all(r.startswith("Observation/") for r in results)
    for ref in results[:: max(1, len(results) // 5)]:
        assert _about_patient(j.fhir_read(ref), j.patient), "each result is an Observation of the patient"
    assert {f["contentType"] for f in report["presentedForm"]} == {"application/pdf", "text/html"}
    pdf = presented_pdf(report)
    assert pdf is not None and pdf.startswith(b"%PDF")
    assert step.report_pdf is not None and step.report_pdf.read_bytes() == pdf
    doc = pdfium.PdfDocument(pdf)
    texts = [page.get_textpage().get_text_range() for page in doc]
    assert len(doc) >= len(REPORT_SECTIONS)
    assert title in texts[0] and "Goals achieved" in texts[0]
    index = -1
    for section in REPORT_SECTIONS:  # in order, one page each (the summary page may name them in its gaps)
        index = next(i for i in range(index + 1, len(texts)) if section in texts[i])
        image = np.asarray(doc[index].render(scale=1).to_pil().convert("L"))
        h, w = image.shape
        plot_area = image[int(h * 0.14) : int(h * 0.95), int(w * 0.03) : int(w * 0.97)]
        assert float((plot_area < 240).mean()) > 0.01, f"{section}: its plot area is blank"
    html = next(f for f in report["presentedForm"] if f["contentType"] == "text/html")
    text = base64.b64decode(html["data"]).decode()
    assert all(f"<h2>{section}</h2>" in text for section in REPORT_SECTIONS)
    # The views through the front door, as the EHR's read-only client.
    root = j.urls.fhir_base.removesuffix("/fhir")
    view = j.api.http.get(f"{root}/reports/{report['id']}/html", headers=j.api.ehr)
    assert view.status_code == 200 and view.headers["content-type"].startswith("text/html")
    assert j.api.http.get(f"{root}/reports/{report['id']}/pdf", headers=j.api.ehr).content == pdf
    return report


def test_one_patient_from_evaluation_to_mastery_as_an_ehr_reads_it(
    journey: Journey, closing_notes: list[str]
) -> None:
    j = journey

    # 1. Initial evaluation: a panel of Observations; the plan service drafts a plan from its event.
    evaluation = j.initial_evaluation()
    panel, *members = evaluation.observations
    assert panel["hasMember"] and len(members) == len(panel["hasMember"])
    assert all(_about_patient(o, j.patient) for o in evaluation.observations)
    assert any("berg-balance-scale" in _codes(o) for o in members)
    assert evaluation.care_plan is not None and evaluation.care_plan["status"] == "draft"
    assert _kinds(evaluation) == ["drafted"]
    assert set(evaluation.stages) == {BALANCE, KNEE}
    assert set(evaluation.stages.values()) == {"unconscious-incompetence"}
    assert all(set(levels.values()) == {0} for levels in evaluation.levels.values())
    assert {g["description"]["text"] for g in evaluation.goals} == {
        "Stand at the kitchen counter without holding on",
        "Climb the stairs at home",
    }
    assert {goal_achievement(g) for g in evaluation.goals} == {"in-progress"}

    # 2. Review (round-robin over dimensions for balance) and activation; the clinic's devices are registered.
    review = j.review_and_activate()
    assert _kinds(review) == ["rules", "waiver", "activated"]
    assert "no vastus lateralis electrode" in review.changes[1].reason
    assert review.care_plan is not None and review.care_plan["status"] == "active"
    hub = j.fhir_read(f"Device/{j.devices['hub']}")
    for sensor in ("emg", "balance"):
        device = j.fhir_read(f"Device/{j.devices[sensor]}")
        assert device["parent"]["reference"] == f"Device/{hub['id']}"

    # 3. Sessions 1-3 with feedback: stages climb; mastery proposes a load-bearing advance, which for this
    #    patient at fall risk (Berg 38 < 45) is a Task the therapist approves; it cites the device metrics.
    s1 = j.session(label="self-rating agrees")
    _check_session(j, s1)
    assert s1.stages[BALANCE] == "conscious-incompetence"
    assert any("self-rating 3/4 agrees" in r for r in _reasons(s1))
    s2 = j.session()
    _check_session(j, s2)
    s3 = j.session(label="third clean session")
    _check_session(j, s3)
    assert s3.stages[BALANCE] == "conscious-competence"
    [proposed] = [c for c in s3.changes if "needs your approval" in c.reason]
    assert proposed.kind == "held" and "fall risk (Berg 38 < 45)" in proposed.reason
    [task] = s3.tasks
    assert j.fhir_read(f"Task/{task['id']}")["status"] == "completed", "the EHR reads the answered Task"
    [advance] = [c for c in s3.changes if "load bearing 0 -> 1" in c.reason and "approved by" in c.reason]
    assert {f"Encounter/{s.session}" for s in (s1, s2, s3)} <= set(advance.evidence)
    cited = [j.fhir_read(ref) for ref in advance.evidence if ref.startswith("Observation/")]
    assert cited and all("device" in o for o in cited), "the advance cites the device-metric Observations"
    assert {"sway-ellipse-area", "sway-mean-velocity"} <= {c for o in cited for c in _codes(o)}
    # The proposal listed every criterion it was judged on: sway measured and met in each of the 3 sessions.
    sway = [c for c in proposed.criteria if c["criterion"] in ("sway-area", "sway-velocity")]
    assert len(sway) == 6 and {c["status"] for c in sway} == {"pass"}
    assert all(str(c["source"]).startswith("Observation/") for c in sway)
    assert s3.levels[BALANCE]["loadBearing"] == 1
    # The knee is measured too, and its measured failures hold it: co-contraction above 40 % is a failure.
    assert s3.levels[KNEE] == s1.levels[KNEE]

    # 4. A symptomatic session holds progress: a version that says why, and no progression.
    s4 = j.session(label="symptomatic", pain_after=5, pain24h=2)
    _check_session(j, s4)
    assert s4.changes and set(_kinds(s4)) == {"symptoms"}
    assert all("holding at the current level" in c.reason for c in s4.changes)
    assert not any("advancing" in c.reason for c in s4.changes)
    assert s4.levels == s3.levels and s4.stages == s3.stages

    # 5. Without feedback, a marked retention attempt and a dual task: mastery (unconscious competence); the
    #    next advance (proprioception, round-robin) is approved and re-enters conscious competence.
    for label, retention in (("retention check, no feedback", True), ("", False)):
        _check_session(j, j.session(label=label, feedback=False, retention=retention))
    s7 = j.session(label="dual task", feedback=False, dual_task_cost=4.0)
    _check_session(j, s7)
    [mastery] = [c for c in s7.changes if "-> unconscious competence" in c.reason]
    assert "retention attempt" in mastery.reason and "deterioration of 4 %" in mastery.reason
    assert any("proprioception 0 -> 1" in c.reason and "approved by" in c.reason for c in s7.changes)
    [reentry] = [c for c in s7.changes if "unconscious competence -> conscious competence" in c.reason]
    assert "re-enters at conscious competence" in reentry.reason
    assert s7.levels[BALANCE]["proprioception"] == 1, "round-robin: proprioception after load bearing"

    # 6. Eyes closed now (the next step of the proprioception ladder): mastery again at this level, and joints
    #    advance (not a fall-risk dimension: no approval needed).
    s8 = j.session(label="retention check, no feedback", feedback=False, retention=True)
    _check_session(j, s8)
    s9 = j.session(label="dual task", feedback=False, dual_task_cost=4.0)
    _check_session(j, s9)
    last = j.session(feedback=False)
    _check_session(j, last)
    closed_eyes = [b for b in last.streams if b["streamType"] == "force-plate"]
    assert closed_eyes[0]["protocol"]["vision"] == "closed"
    assert any("-> unconscious competence" in c.reason for c in last.changes)
    assert any("advancing joints 0 -> 1" in c.reason for c in last.changes)
    assert {d: v for d, v in last.levels[BALANCE].items() if v} == {
        "loadBearing": 1,
        "proprioception": 1,
        "joints": 1,
    }

    # 7. Re-assessment: deficits gone; the therapist applies the proposal; goals achieved.
    reassessment = j.reassessment()
    assert _kinds(reassessment) == ["reassessed"]
    assert all(_about_patient(o, j.patient) for o in reassessment.observations)
    assert {goal_achievement(g) for g in reassessment.goals} == {"achieved"}
    assert {g["lifecycleStatus"] for g in reassessment.goals} == {"completed"}
    assert reassessment.care_plan is not None
    balance_request = exercises(reassessment.care_plan)[BALANCE].activity
    assert j.fhir_read(f"ServiceRequest/{balance_request}")["status"] == "completed"

    # 8. The progress report the re-assessment asked for (the reports service, from the plan's event): a
    #    DiagnosticReport with its PDF and HTML, the course drawn from what the platform holds.
    progress = j.progress_report()
    report = _check_report(j, progress, {"11508-9", "11506-3"}, "Progress report")
    texts = "".join(
        p.get_textpage().get_text_range() for p in pdfium.PdfDocument(presented_pdf(report) or b"")
    )
    assert "Static standing balance" in texts and "improved beyond MCID" in texts
    assert "No balance-board trials recorded." not in texts and "No EMG envelopes recorded." not in texts
    # One report per re-assessment: the reports service's consumer runs each plan event once.
    progress_notes = {"patient": f"Patient/{j.patient}", "code": "http://loinc.org|11508-9"}
    assert [r["id"] for r in j.fhir_search("DiagnosticReport", progress_notes)] == [report["id"]]

    # 9. Discharge: the CarePlan completed, each Goal closed (achieved here), and the discharge summary.
    discharge = j.discharge()
    assert discharge.care_plan is not None and discharge.care_plan["status"] == "completed"
    assert _kinds(discharge) == ["discharged"]
    assert {goal_achievement(g) for g in discharge.goals} == {"achieved"}
    summary = _check_report(j, discharge, {"18842-5"}, "Discharge summary")
    assert summary["id"] != report["id"] and "2 of 2 goals achieved" in summary["conclusion"]
    # On demand, through the front door: another progress report of the (now completed) plan, drawn by the
    # reports service's worker (202 with its id; readable over FHIR once written).
    root = j.urls.fhir_base.removesuffix("/fhir")
    made = j.api.http.post(
        f"{root}/reports", json={"patient": j.patient, "kind": "progress"}, headers=j.api.clinician
    )
    assert made.status_code == 202, made.text
    assert made.json()["carePlan"] == f"CarePlan/{j.plan_id}"
    assert made.headers["Location"] == f"/fhir/DiagnosticReport/{made.json()['id']}"

    def drawn() -> dict[str, Any] | None:
        resp = j.api.http.get(f"{j.urls.fhir_base}/DiagnosticReport/{made.json()['id']}", headers=j.api.ehr)
        return resp.json() if resp.status_code == 200 else None

    on_demand = j.wait("the report asked for on demand", drawn, timeout_s=240)
    assert report_codes(on_demand) >= {"11508-9"} and presented_pdf(on_demand) is not None
    refused = j.api.http.post(f"{root}/reports", json={"patient": j.patient}, headers=j.api.ehr)
    assert refused.status_code == 403, "the read-only EHR client may not generate reports"
    # Bad input names the field; a plan or patient with nothing to report on is 404, never an empty report.
    bad = j.api.http.post(f"{root}/reports", json={"patient": "a b"}, headers=j.api.clinician)
    assert bad.status_code == 400 and "patient" in bad.text
    for body in ({"patient": j.patient, "carePlan": "CarePlan/nope"}, {"patient": "nobody-0000"}):
        missing = j.api.http.post(f"{root}/reports", json=body, headers=j.api.clinician)
        assert missing.status_code == 404, missing.text
    # What an EHR files beside it: the referral diagnosis as a Condition of the patient.
    conditions = j.fhir_search("Condition", {"patient": f"Patient/{j.patient}"})
    assert conditions and all(_about_patient(c, j.patient) for c in conditions)

    # Across the course: every CarePlan version is readable in _history, numbered without gaps, in step order.
    history = j.care_plan_history()
    produced = [c.version for s in j.steps for c in s.changes]
    assert produced == sorted(history) == list(range(1, max(history) + 1))
    # Stages follow the patient: unconscious competence reached at two levels, and every move down is the
    # re-entry of a new level, said in its version.
    stage_changes = [
        c for st in j.steps for c in st.changes if c.reason.startswith("Static standing balance")
    ]
    reached = [c for c in stage_changes if "-> unconscious competence" in c.reason]
    assert len(reached) == 2
    downs = [c for c in stage_changes if "unconscious competence -> conscious competence" in c.reason]
    assert downs and all("re-enters at conscious competence" in c.reason for c in downs)
    assert set(STAGES) >= {s.stages[BALANCE] for s in j.steps if s.stages}
    # Every session is an Encounter of the patient, each with its Procedures.
    encounters = j.fhir_search("Encounter", {"patient": f"Patient/{j.patient}"})
    assert {e["id"] for e in encounters} == {s.session for s in j.steps if s.session}

    slowest = sorted(j.steps, key=lambda s: s.duration_s, reverse=True)[:3]
    note = f"journey: {len(j.steps)} steps in {j.wall_time_s:.1f}s wall time; slowest steps: " + ", ".join(
        f"{s.name} {s.duration_s:.1f}s" for s in slowest
    )
    closing_notes.append(note)
    print(note)
    counts = ", ".join(
        f"{kind} {min(n)}-{max(n)} in {len(n)} trials" for kind, n in sorted(PER_TRIAL.items())
    )
    closing_notes.append(f"journey: Observations per streamed trial (FHIR search, set included): {counts}")
