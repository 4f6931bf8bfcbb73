"""The evaluation service over real PostgreSQL and the real broker: the workflow, the FHIR API an
EHR uses, device metrics and session outcomes arriving as events, and patient-scoped tokens."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.observation import Observation
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import text
from sqlalchemy.engine import Engine

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.evaluation.config import Settings
from relearn.evaluation.main import create_app
from relearn.evaluation.mapper import metric_observation_id
from relearn.evaluation.schemas import MetricComputed
from relearn.shared.events import (
    DEVICE_METRICS,
    EVALUATION_EVENTS,
    SESSIONS_EVENTS,
    CloudEvent,
    producer_config,
)

JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def service(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.evaluation",
        Settings,
        create_app,
        database_url=pg_database("evaluation"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
    )
    with TestClient(app) as client:
        assert app.state.workers.consumers[0].wait_until_assigned(30)
        yield {"client": client, "issuer": issuer, "engine": app.state.engine, "bootstrap": broker.bootstrap}


def _auth(
    issuer: DevIssuer, scope: str = "system/*.read system/*.write", patient: str | None = None
) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint('relearn-dev', scope, patient=patient)}"}


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        resources = conn.execute(text("SELECT count(*) FROM fhir_resource")).scalar_one()
        # Domain events only: every request also stages its AuditEvent (relearn.audit.events).
        events = conn.execute(
            text("SELECT count(*) FROM outbox_event WHERE topic <> 'relearn.audit.events'")
        ).scalar_one()
    return int(resources), int(events)


def _events_for(
    bootstrap: str, topic: str, patient: str, types: set[str], timeout_s: float = 30
) -> list[CloudEvent]:
    # No consumer group: joining one can take longer than the wait on a loaded machine.
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    found: list[CloudEvent] = []
    try:
        partitions = wait_for(lambda: consumer.partitions_for_topic(topic), what=f"{topic} to exist")
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        wait_for(
            lambda: (
                found.extend(
                    e
                    for records in consumer.poll(timeout_ms=200).values()
                    for r in records
                    if (e := CloudEvent.from_bytes(r.value)).subject == patient and e.type in types
                )
                or {e.type for e in found} >= types
            ),
            timeout_s=timeout_s,
            what=f"{types} for {patient}",
        )
    finally:
        consumer.close()
    return found


def test_an_evaluation_is_a_panel_with_members_and_tells_the_plan_service(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    client, issuer = service["client"], service["issuer"]
    resp = client.post("/evaluations", json=evaluation_body("eval-1"), headers=_auth(issuer))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["eventType"] == "evaluation.completed.v1"
    assert resp.headers["location"].endswith(body["evaluation"])
    knee = [d for d in body["deficits"] if d["measure"] == "rom-knee-flexion"]
    assert [d["side"] for d in knee] == ["right"]  # 90 deg is a deficit, 140 deg is not
    assert any(d["measure"] == "tug" for d in body["deficits"])

    # What an EHR reads: the panel with its members, through the FHIR API.
    panel_id = body["evaluation"].split("/")[1]
    bundle = client.get(
        f"/fhir/Observation?_id={panel_id}&_include=Observation:has-member", headers=_auth(issuer)
    ).json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes.count("match") == 1 and modes.count("include") == len(body["members"])
    panel = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match")
    assert len(panel["hasMember"]) == len(body["members"])
    tug = client.get(
        "/fhir/Observation?patient=eval-1&code=http://loinc.org|89423-8", headers=_auth(issuer)
    ).json()
    assert tug["total"] == 1
    assert tug["entry"][0]["resource"]["valueQuantity"]["code"] == "s"

    [event] = _events_for(service["bootstrap"], EVALUATION_EVENTS, "eval-1", {"evaluation.completed.v1"})[:1]
    assert event.data["evaluationId"] == panel_id
    assert {g["text"] for g in event.data["goals"]} >= {"Walk to the shop without my cane"}
    # The fall-risk screening the plan reads, pointing at the stored Observations.
    tug_id = tug["entry"][0]["resource"]["id"]
    assert event.data["screening"]["tug"] == {
        "value": 21.3,
        "unit": "s",
        "observation": f"Observation/{tug_id}",
    }
    berg = event.data["screening"]["berg"]
    assert (berg["value"], berg["unit"]) == (38, "{score}")
    stored_berg = client.get(f"/fhir/{berg['observation']}", headers=_auth(issuer)).json()
    assert stored_berg["code"]["coding"][0]["code"] == "berg-balance-scale"
    assert stored_berg["valueQuantity"]["value"] == 38

    # The referral diagnoses are problem-list Conditions an EHR files as such, and the event names
    # them for CarePlan.addresses.
    assert len(body["conditions"]) == 2
    assert event.data["conditions"] == body["conditions"]
    assert [r["condition"] for r in event.data["referralConditions"]] == body["conditions"]
    problems = client.get(
        "/fhir/Condition?patient=eval-1&category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
        headers=_auth(issuer),
    ).json()
    assert {f"Condition/{e['resource']['id']}" for e in problems["entry"]} == set(body["conditions"])
    stroke = client.get(
        "/fhir/Condition?patient=eval-1&code=http://hl7.org/fhir/sid/icd-10-cm|I63.9&clinical-status=active",
        headers=_auth(issuer),
    ).json()
    assert stroke["total"] == 1
    assert stroke["entry"][0]["resource"]["code"]["text"] == "Left MCA ischaemic stroke"
    social = client.get(
        "/fhir/Observation?patient=eval-1&category=social-history", headers=_auth(issuer)
    ).json()
    assert all("referral" not in str(e["resource"]["code"]) for e in social.get("entry", []))


def test_a_reassessment_emits_its_own_event(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    resp = service["client"].post(
        "/evaluations", json=evaluation_body("eval-2", kind="reassessment"), headers=_auth(service["issuer"])
    )
    assert resp.status_code == 201
    assert resp.json()["eventType"] == "evaluation.reassessed.v1"
    [event] = _events_for(service["bootstrap"], EVALUATION_EVENTS, "eval-2", {"evaluation.reassessed.v1"})[:1]
    assert (event.data["screening"]["tug"]["value"], event.data["screening"]["berg"]["value"]) == (21.3, 38)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            {
                "rom": [
                    {"joint": "knee", "motion": "flexion", "side": "right", "mode": "active", "degrees": 400}
                ]
            },
            "rom[0].degrees",
        ),
        ({"strength": [{"muscleGroup": "knee-extensors", "side": "right", "grade": 7}]}, "strength[0].grade"),
        ({"pain": 11}, "pain"),
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(
    service: dict[str, Any],
    change: dict[str, Any],
    field: str,
    evaluation_body: Callable[..., dict[str, Any]],
) -> None:
    before = _counts(service["engine"])
    resp = service["client"].post(
        "/evaluations", json=evaluation_body("eval-bad", **change), headers=_auth(service["issuer"])
    )
    assert resp.status_code == 400
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(field in " ".join(i.get("expression", [])) for i in outcome["issue"]), outcome
    assert _counts(service["engine"]) == before


def test_an_idempotency_key_makes_a_retry_safe(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    headers = {**_auth(service["issuer"]), "Idempotency-Key": "visit-42"}
    first = service["client"].post("/evaluations", json=evaluation_body("eval-3"), headers=headers)
    before = _counts(service["engine"])
    again = service["client"].post("/evaluations", json=evaluation_body("eval-3"), headers=headers)
    # The first answer is replayed as it was (shared/idempotency.py), marked as a replay.
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["evaluation"] == first.json()["evaluation"]
    assert _counts(service["engine"]) == before


def test_scopes_and_patient_tokens(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    client, issuer = service["client"], service["issuer"]
    assert client.post("/evaluations", json=evaluation_body("eval-4")).status_code == 401
    assert (
        client.post(
            "/evaluations", json=evaluation_body("eval-4"), headers=_auth(issuer, "system/CarePlan.write")
        ).status_code
        == 403
    )
    client.post("/evaluations", json=evaluation_body("eval-4"), headers=_auth(issuer))
    mine = _auth(issuer, "patient/*.read", patient="eval-4")
    bundle = client.get("/fhir/Observation?_count=200", headers=mine).json()
    assert bundle["total"] > 0
    assert {e["resource"]["subject"]["reference"] for e in bundle["entry"]} == {"Patient/eval-4"}
    other = client.get("/fhir/Observation?patient=eval-1", headers=_auth(issuer)).json()["entry"][0]
    assert client.get(f"/fhir/Observation/{other['resource']['id']}", headers=mine).status_code == 404


def test_device_metrics_become_observations_and_a_replay_updates_them(service: dict[str, Any]) -> None:
    data = {
        "patient": "eval-5",
        "device": "emg-7",
        "stream": "s-1",
        "session": "Encounter/enc-9",
        "metric": "emg-rms",
        "window": {"start": "2026-11-20T10:00:00+00:00", "end": "2026-11-20T10:00:01+00:00"},
        "value": 41.5,
        "unit": "uV",
        "samples": {"periodMs": 50, "origin": 0, "factor": 0.1, "unit": "uV", "data": "10 20 415 30"},
    }
    # A muscle that produced no onset: a value-less event, a finding to store (not a poison event).
    absent = {
        **data,
        "metric": "emg-onset-latency",
        "channel": "RF",
        "muscle": "rectus-femoris",
        "value": None,
        "unit": "ms",
        "status": "not-detected",
        "reason": "no onset above baseline mean + 3 SD for 25 ms",
        "reference": {"kind": "cue", "channel": None, "muscle": None},
        "samples": None,
    }
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-gateway"))
    for _ in range(2):  # two events for the same window: a recomputation (new event id)
        event = CloudEvent.new("/relearn/device-gateway", "device.metric-computed.v1", "eval-5", data)
        producer.send(DEVICE_METRICS, key=event.key, value=event.to_bytes()).get(10)
    # The gateway's close summary shares the topic; this service has nothing to do with it.
    completed = CloudEvent.new(
        "/relearn/device-gateway/metrics",
        "device.stream-metrics-completed.v1",
        "eval-5",
        {
            "patient": "eval-5",
            "device": "emg-7",
            "stream": "s-1",
            "session": None,
            "streamType": "emg",
            "metrics": [],
            "gaps": 0,
        },
    )
    # The gateway names the Observation of each metric: it is stored under that id.
    named = {**data, "metric": "emg-median-frequency", "unit": "Hz", "observation": "Observation/gw-named-1"}
    for e in (
        CloudEvent.new("/relearn/device-gateway", "device.metric-computed.v1", "eval-5", absent),
        CloudEvent.new("/relearn/device-gateway", "device.metric-computed.v1", "eval-5", named),
        completed,
    ):
        producer.send(DEVICE_METRICS, key=e.key, value=e.to_bytes()).get(10)
    producer.close()

    obs_id = metric_observation_id(MetricComputed.model_validate(data))
    client, auth = service["client"], _auth(service["issuer"])
    wait_for(
        lambda: client.get(f"/fhir/Observation/{obs_id}/_history", headers=auth).json().get("total") == 2,
        what="both deliveries applied",
    )
    obs = client.get(f"/fhir/Observation/{obs_id}", headers=auth).json()
    assert obs["device"]["reference"] == "Device/emg-7"
    assert obs["encounter"]["reference"] == "Encounter/enc-9"
    assert obs["component"][0]["valueSampledData"]["data"] == "10 20 415 30"
    absent_id = metric_observation_id(MetricComputed.model_validate(absent))
    wait_for(
        lambda: client.get(f"/fhir/Observation/{absent_id}", headers=auth).status_code == 200,
        what="the not-detected onset stored",
    )
    none = client.get(f"/fhir/Observation/{absent_id}", headers=auth).json()
    assert "valueQuantity" not in none and none["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert none["bodySite"]["coding"][0]["code"] == "rectus-femoris"
    assert none["note"][0]["text"].startswith("no onset")
    wait_for(
        lambda: client.get("/fhir/Observation/gw-named-1", headers=auth).status_code == 200,
        what="the metric stored under the Observation its event names",
    )
    stored = client.get("/fhir/Observation/gw-named-1", headers=auth).json()
    assert stored["code"]["coding"][0]["code"] == "emg-median-frequency"
    assert metric_observation_id(MetricComputed.model_validate(named)) == "gw-named-1"
    bundle = client.get("/fhir/Observation?patient=eval-5&device=Device/emg-7", headers=auth).json()
    assert bundle["total"] == 3  # the RMS updated, not duplicated; the onset; the named median frequency


def test_a_trial_summary_is_one_observation_with_channels_and_window_series_and_a_redelivery_adds_nothing(
    service: dict[str, Any],
) -> None:
    trial = {"start": "2026-11-21T10:00:00+00:00", "end": "2026-11-21T10:00:04.500000+00:00"}
    rms = {
        "patient": "eval-8",
        "device": "emg-8",
        "stream": "s-8",
        "session": "enc-8",
        "streamType": "emg",
        "metric": "emg-rms",
        "unit": "uV",
        "trial": trial,
        "observation": "Observation/trial-s8-rms",
        "results": [
            {
                "channel": "VM",
                "muscle": "vastus-medialis",
                "value": 52.5,
                "unit": "uV",
                "status": "measured",
                "series": {
                    "periodMs": 1000,
                    "origin": 0,
                    "factor": 1,
                    "unit": "uV",
                    "data": "50.1 E 55.2 51 48.7",
                },
            },
            {
                "channel": "BF",
                "muscle": "biceps-femoris",
                "value": None,
                "unit": "uV",
                "status": "not-computable",
                "reason": "the channel's samples are too uneven",
                "series": {"periodMs": 1000, "origin": 0, "factor": 1, "unit": "uV", "data": "E E E E E"},
            },
        ],
        "windows": {
            "periodMs": 1000,
            "count": 5,
            "partial": 1,
            "gaps": [{"index": 1, "reason": "no samples in this window"}],
            "gapCount": 1,
            "cut": False,
        },
    }
    area = {
        **rms,
        "metric": "sway-ellipse-area",
        "stream": "s-9",
        "streamType": "force-plate",
        "unit": "cm2",
        "observation": "Observation/trial-s9-area",
        "results": [{"value": 3.25, "unit": "cm2", "status": "measured"}],
        "windows": None,
    }
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-gateway"))
    for data in (rms, rms, area):  # the RMS summary delivered twice (at least once)
        event = CloudEvent.new(
            "/relearn/device-gateway/metrics", "device.trial-summarized.v1", "eval-8", data
        )
        producer.send(DEVICE_METRICS, key=event.key, value=event.to_bytes()).get(10)
    producer.close()

    client, auth = service["client"], _auth(service["issuer"])
    wait_for(
        lambda: client.get("/fhir/Observation/trial-s9-area", headers=auth).status_code == 200,
        what="both summaries stored",
    )
    obs = client.get("/fhir/Observation/trial-s8-rms", headers=auth).json()
    assert obs["code"]["coding"][0]["code"] == "emg-rms" and obs["effectivePeriod"] == trial
    assert obs["encounter"]["reference"] == "Encounter/enc-8" and "valueQuantity" not in obs
    vm, vm_series, bf, bf_series = obs["component"]
    assert vm["valueQuantity"]["value"] == 52.5 and "vastus-medialis (channel VM)" in vm["code"]["text"]
    assert vm["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "vastus-medialis"
    assert vm_series["code"]["coding"][0]["code"] == "emg-window-series"
    assert vm_series["valueSampledData"]["data"] == "50.1 E 55.2 51 48.7"
    assert vm_series["valueSampledData"]["period"] == 1000
    assert "valueQuantity" not in bf and bf["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert bf_series["valueSampledData"]["data"] == "E E E E E"
    notes = [n["text"] for n in obs["note"]]
    assert any("too uneven" in n for n in notes) and any("1 of 5 windows" in n for n in notes)
    Observation.model_validate(obs)
    sway = client.get("/fhir/Observation/trial-s9-area", headers=auth).json()
    assert sway["valueQuantity"]["value"] == 3.25 and "component" not in sway
    # Re-delivered: one Observation, one version (nothing changed).
    assert client.get("/fhir/Observation/trial-s8-rms/_history", headers=auth).json()["total"] == 1
    bundle = client.get("/fhir/Observation?patient=eval-8", headers=auth).json()
    assert bundle["total"] == 2


def test_session_outcomes_become_observations(service: dict[str, Any]) -> None:
    logged = {
        "session": "Encounter/enc-11",
        "patient": "eval-6",
        "setting": "clinic",
        "start": "2026-11-20T09:00:00+00:00",
        "end": "2026-11-20T09:45:00+00:00",
        "carePlan": "CarePlan/cp-1",
        "exercises": [
            {
                "procedure": "Procedure/pr-1",
                "activity": "a-1",
                "pattern": "knee-extension",
                "quality": 3,
                "selfRating": 3,
                "painBefore": 2,
                "painAfter": 4,
            }
        ],
    }
    symptoms = {
        "session": "Encounter/enc-11",
        "patient": "eval-6",
        "recordedAt": "2026-11-21T09:00:00+00:00",
        "pain24h": 3,
        "flare": False,
        "notes": None,
    }
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-sessions"))
    for etype, data in (("session.logged.v1", logged), ("session.symptoms-recorded.v1", symptoms)):
        event = CloudEvent.new("/relearn/sessions", etype, "eval-6", data)
        producer.send(SESSIONS_EVENTS, key=event.key, value=event.to_bytes()).get(10)
    producer.close()
    client, auth = service["client"], _auth(service["issuer"])
    bundle = wait_for(
        lambda: (
            (
                b := client.get(
                    "/fhir/Observation?patient=eval-6&encounter=Encounter/enc-11", headers=auth
                ).json()
            ).get("total")
            == 4
            and b
        ),
        what="pain before/after, quality and 24-h pain",
    )
    pains = sorted(
        e["resource"]["valueQuantity"]["value"]
        for e in bundle["entry"]
        if any(c["code"] == "72514-3" for c in e["resource"]["code"]["coding"])
    )
    assert pains == [2, 3, 4]


def test_a_set_lists_its_trials_whichever_arrives_first(service: dict[str, Any]) -> None:
    """The trials of one exercise (its deviceStreams) are one device-set Observation, partOf the Procedure,
    with the trial summaries as members: one summary stored before the session is logged, one after."""

    def summary(stream: str, metric: str, unit: str) -> CloudEvent:
        data = {
            "patient": "eval-9",
            "device": "dev-9",
            "stream": stream,
            "session": "enc-19",
            "streamType": "force-plate",
            "metric": metric,
            "unit": unit,
            "trial": {"start": "2026-11-22T10:00:00+00:00", "end": "2026-11-22T10:00:30+00:00"},
            "observation": f"Observation/trial-{stream}-{metric}",
            "results": [{"value": 2.5, "unit": unit, "status": "measured"}],
        }
        return CloudEvent.new("/relearn/device-gateway/metrics", "device.trial-summarized.v1", "eval-9", data)

    logged = {
        "session": "Encounter/enc-19",
        "patient": "eval-9",
        "setting": "clinic",
        "start": "2026-11-22T09:30:00+00:00",
        "end": "2026-11-22T10:30:00+00:00",
        "carePlan": "CarePlan/cp-9",
        "exercises": [
            {
                "procedure": "Procedure/pr-9",
                "activity": "a-9",
                "pattern": "standing-balance",
                "sets": 2,
                "reps": [5, 4],
                "deviceStreams": ["st-a", "st-b"],
                "quality": 3,
            }
        ],
    }
    client, auth = service["client"], _auth(service["issuer"])
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-sets"))
    before = summary("st-a", "sway-ellipse-area", "cm2")
    producer.send(DEVICE_METRICS, key=before.key, value=before.to_bytes()).get(10)
    wait_for(
        lambda: client.get("/fhir/Observation/trial-st-a-sway-ellipse-area", headers=auth).status_code == 200,
        what="the first trial stored",
    )
    event = CloudEvent.new("/relearn/sessions", "session.logged.v1", "eval-9", logged)
    producer.send(SESSIONS_EVENTS, key=event.key, value=event.to_bytes()).get(10)
    after = summary("st-b", "sway-mean-velocity", "cm/s")
    producer.send(DEVICE_METRICS, key=after.key, value=after.to_bytes()).get(10)
    producer.close()

    def members() -> dict[str, Any] | None:
        bundle = client.get("/fhir/Observation?patient=eval-9&code=device-set", headers=auth).json()
        found = [e["resource"] for e in bundle.get("entry", [])]
        return found[0] if found and len(found[0].get("hasMember", [])) == 2 else None

    the_set = wait_for(members, what="the set listing both trials")
    assert {m["reference"] for m in the_set["hasMember"]} == {
        "Observation/trial-st-a-sway-ellipse-area",
        "Observation/trial-st-b-sway-mean-velocity",
    }
    assert the_set["partOf"] == [{"reference": "Procedure/pr-9"}]
    assert the_set["encounter"] == {"reference": "Encounter/enc-19"}
    assert [c["valueInteger"] for c in the_set["component"]] == [2, 9]
    Observation.model_validate(the_set)
    # Searching one trial's stream finds its summaries and its set.
    stream = client.get(
        "/fhir/Observation?identifier=https://relearn.health/fhir/sid/device-stream|st-b", headers=auth
    ).json()
    assert {e["resource"]["code"]["coding"][0]["code"] for e in stream["entry"]} == {
        "sway-mean-velocity",
        "device-set",
    }


def test_home_practice_becomes_patient_reported_exercise(service: dict[str, Any]) -> None:
    logged = {
        "session": "Procedure/pr-h1",  # home practice names its exercise's Procedure: no Encounter
        "sessionId": "home-1",
        "encounter": None,
        "patient": "eval-home",
        "setting": "home",
        "start": "2026-11-21T18:00:00+01:00",
        "end": "2026-11-21T18:20:00+01:00",
        "carePlan": "CarePlan/cp-1",
        "exercises": [
            {"procedure": "Procedure/pr-h1", "activity": "a-1", "pattern": "knee-extension", "painAfter": 1}
        ],
    }
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-sessions"))
    event = CloudEvent.new("/relearn/sessions", "session.logged.v1", "eval-home", logged)
    producer.send(SESSIONS_EVENTS, key=event.key, value=event.to_bytes()).get(10)
    producer.close()
    client, auth = service["client"], _auth(service["issuer"])
    found = wait_for(
        lambda: (
            (
                b := client.get("/fhir/Observation?patient=eval-home&category=activity", headers=auth).json()
            ).get("total")
            == 2
            and b
        ),
        what="the exercise activity and its duration",
    )
    by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"] for e in found["entry"]}
    assert by_code["73985-4"]["valueCodeableConcept"]["coding"][0]["code"] == "knee-extension"
    assert by_code["55411-3"]["valueQuantity"]["value"] == 20
    assert all(o["performer"] == [{"reference": "Patient/eval-home"}] for o in by_code.values())
    # No visit: nothing it recorded names an Encounter.
    everything = client.get("/fhir/Observation?patient=eval-home", headers=auth).json()
    assert everything["total"] == 3 and not any("encounter" in e["resource"] for e in everything["entry"])


def test_an_exercise_rom_becomes_the_observation_the_event_names_once(service: dict[str, Any]) -> None:
    rom_id = str(uuid.uuid4())
    logged = {
        "session": "Encounter/enc-12",
        "patient": "eval-7",
        "setting": "clinic",
        "start": "2026-11-20T09:00:00+00:00",
        "end": "2026-11-20T09:45:00+00:00",
        "carePlan": "CarePlan/cp-2",
        "exercises": [
            {
                "procedure": "Procedure/pr-7",
                "activity": "a-1",
                "pattern": "knee-extension",
                "quality": 3,
                "painBefore": 1,
                "painAfter": 1,
                "retentionAttempt": False,
                "rom": {
                    "valueDeg": 85,
                    "method": "goniometer",
                    "motion": "knee-extension",
                    "observation": f"Observation/{rom_id}",
                },
                "start": "2026-11-20T09:05:00+00:00",
                "end": "2026-11-20T09:15:00+00:00",
            }
        ],
    }
    first = CloudEvent.new("/relearn/sessions", "session.logged.v1", "eval-7", logged)
    republished = CloudEvent.new("/relearn/sessions", "session.logged.v1", "eval-7", logged)  # new event id
    producer = KafkaProducer(**producer_config(service["bootstrap"], "test-sessions"))
    for event in (first, first, republished):
        producer.send(SESSIONS_EVENTS, key=event.key, value=event.to_bytes()).get(10)
    producer.close()

    client, auth = service["client"], _auth(service["issuer"])
    # Pain after is written once per delivery: two versions mean both distinct events were applied.
    pain_after = wait_for(
        lambda: (
            (
                b := client.get(
                    "/fhir/Observation?patient=eval-7&code=https://relearn.health/fhir/CodeSystem/"
                    "neuromuscular-evaluation|pain-after-session",
                    headers=auth,
                ).json()
            ).get("total")
            == 1
            and b["entry"][0]["resource"]["meta"]["versionId"] == "2"
        ),
        what="both session.logged.v1 events applied",
    )
    assert pain_after
    obs = client.get(f"/fhir/Observation/{rom_id}", headers=auth).json()
    assert obs["meta"]["versionId"] == "1", "a replay with the same content writes no new version"
    assert obs["valueQuantity"] == {
        "value": 85,
        "unit": "deg",
        "system": "http://unitsofmeasure.org",
        "code": "deg",
    }
    assert [c["code"] for c in obs["code"]["coding"]] == ["rom-exercise-active", "rom-knee-extension"]
    assert obs["method"]["coding"][0]["code"] == "rom-instrument-goniometer"
    assert obs["partOf"] == [{"reference": "Procedure/pr-7"}]
    assert obs["encounter"] == {"reference": "Encounter/enc-12"}
    assert obs["effectivePeriod"] == {
        "start": "2026-11-20T09:05:00+00:00",
        "end": "2026-11-20T09:15:00+00:00",
    }
    found = client.get("/fhir/Observation?patient=eval-7&part-of=Procedure/pr-7", headers=auth).json()
    assert rom_id in {e["resource"]["id"] for e in found.get("entry", [])}


def test_the_mmt_grade_codesystem_is_published_and_grades_read_as_codes(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    cs = client.get(
        "/fhir/CodeSystem?url=https://relearn.health/fhir/CodeSystem/mmt-grade", headers=auth
    ).json()
    assert cs["total"] == 1 and cs["entry"][0]["resource"]["count"] == 14
    assert client.post("/evaluations", json=evaluation_body("eval-mmt"), headers=auth).status_code == 201
    found = client.get(
        "/fhir/Observation?patient=eval-mmt&value-concept=https://relearn.health/fhir/CodeSystem/mmt-grade|3%2B",
        headers=auth,
    ).json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["code"]["text"] == "Manual muscle test grade 3+"


def test_the_local_codesystem_is_published(service: dict[str, Any]) -> None:
    cs = (
        service["client"]
        .get(
            "/fhir/CodeSystem?url=https://relearn.health/fhir/CodeSystem/neuromuscular-evaluation",
            headers=_auth(service["issuer"]),
        )
        .json()
    )
    assert cs["total"] == 1
    assert cs["entry"][0]["resource"]["content"] == "complete"
    assert (
        service["client"]
        .post("/fhir/CodeSystem", json=cs["entry"][0]["resource"], headers=_auth(service["issuer"]))
        .status_code
        == 405
    )


def test_outcome_measures_trend_per_patient_against_their_mcid(
    service: dict[str, Any], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    client, issuer = service["client"], service["issuer"]
    auth = _auth(issuer)
    initial = [
        {"measure": "ten-metre-walk", "value": 0.40},
        {"measure": "six-minute-walk", "value": 180},
        {"measure": "modified-ashworth", "value": "1+", "side": "right", "muscleGroup": "elbow-flexors"},
    ]
    later = [
        {"measure": "ten-metre-walk", "value": 0.62},  # +0.22 m/s: beyond the 0.16 MCID
        {"measure": "six-minute-walk", "value": 200},  # +20 m: within the 34.4 m MCID
        {"measure": "modified-ashworth", "value": "1", "side": "right", "muscleGroup": "elbow-flexors"},
    ]
    for effective, kind, outcomes in [
        ("2026-10-01T10:00:00+00:00", "initial", initial),
        ("2026-11-15T10:00:00+00:00", "reassessment", later),
    ]:
        body = evaluation_body("eval-out", effective=effective, kind=kind, outcomes=outcomes)
        # The Berg total recorded with the balance tests is the same outcome measure: 38, then 36.
        body["balance"] = [{"test": "berg", "value": 38 if kind == "initial" else 36}]
        assert client.post("/evaluations", json=body, headers=auth).status_code == 201, body

    resp = client.get("/evaluations/outcome-measures?patient=eval-out", headers=auth)
    assert resp.status_code == 200, resp.text
    trends = {t["measure"]: t for t in resp.json()["measures"]}
    assert set(trends) == {"ten-metre-walk", "six-minute-walk", "berg", "modified-ashworth"}
    walk = trends["ten-metre-walk"]
    assert [p["value"] for p in walk["series"]] == [0.4, 0.62]
    assert (walk["verdict"], walk["improvedBeyondMcid"], walk["mcid"]["value"]) == (
        "improved-beyond-mcid",
        True,
        0.16,
    )
    assert "Tilson" in walk["mcid"]["source"]
    six = trends["six-minute-walk"]
    assert (six["verdict"], six["improvedBeyondMcid"], six["code"]["code"]) == (
        "improved-within-mcid",
        False,
        "64098-7",
    )
    berg = trends["berg"]
    assert ([p["value"] for p in berg["series"]], berg["verdict"]) == ([38, 36], "worse-within-mcid")
    mas = trends["modified-ashworth"]
    assert [p["grade"] for p in mas["series"]] == ["1+", "1"]
    assert (mas["side"], mas["muscleGroup"], mas["verdict"]) == (
        "right",
        "elbow-flexors",
        "improved-beyond-mcid",
    )

    # A patient's own token reads theirs, not another's.
    own = _auth(issuer, "patient/*.read", patient="eval-out")
    assert client.get("/evaluations/outcome-measures?patient=eval-out", headers=own).status_code == 200
    assert client.get("/evaluations/outcome-measures?patient=eval-1", headers=own).status_code == 403
    assert client.get("/evaluations/outcome-measures?patient=nobody", headers=auth).json()["measures"] == []


def test_a_scored_test_is_a_questionnaire_response_whose_total_joins_the_trend(
    service: dict[str, Any],
) -> None:
    client, auth = service["client"], _auth(service["issuer"])
    berg = client.get("/fhir/Questionnaire/berg-balance-scale", headers=auth)
    assert berg.status_code == 200
    assert (
        client.put("/fhir/Questionnaire/berg-balance-scale", json=berg.json(), headers=auth).status_code
        == 405
    )
    links = [i["linkId"] for i in berg.json()["item"] if i["linkId"] != "total"]

    def answers(scores: list[int], authored: str) -> dict[str, Any]:
        return {
            "resourceType": "QuestionnaireResponse",
            "questionnaire": f"{berg.json()['url']}|{berg.json()['version']}",
            "status": "completed",
            "subject": {"reference": "Patient/eval-qr"},
            "authored": authored,
            "item": [
                {"linkId": k, "answer": [{"valueInteger": v}]} for k, v in zip(links, scores, strict=True)
            ],
        }

    first = client.post(
        "/fhir/QuestionnaireResponse",
        json=answers([2] * 14, "2026-10-01T10:00:00+00:00"),
        headers=auth | JSON,
    )
    assert first.status_code == 201, first.text
    later = client.post(
        "/fhir/QuestionnaireResponse",
        json=answers([3] * 14, "2026-11-15T10:00:00+00:00"),
        headers=auth | JSON,
    )
    assert later.status_code == 201, later.text
    # Each total is an Observation derived from its response.
    found = client.get(
        f"/fhir/Observation?derived-from=QuestionnaireResponse/{later.json()['id']}", headers=auth
    ).json()
    (total,) = [e["resource"] for e in found["entry"]]
    assert total["valueQuantity"]["value"] == 42
    trend = next(
        t
        for t in client.get("/evaluations/outcome-measures?patient=eval-qr", headers=auth).json()["measures"]
        if t["measure"] == "berg"
    )
    # 28 -> 42: +14, beyond the Berg's MDC95 of 6.9.
    assert ([p["value"] for p in trend["series"]], trend["verdict"]) == ([28, 42], "improved-beyond-mcid")

    # An answer out of its item's range is refused, naming the element; nothing is stored.
    bad = answers([2] * 13 + [5], "2026-11-16T10:00:00+00:00")
    resp = client.post("/fhir/QuestionnaireResponse", json=bad, headers=auth | JSON)
    assert resp.status_code == 422, resp.text
    assert "item[13]" in resp.json()["issue"][0]["diagnostics"]
    # Withdrawing a response withdraws its total from the trend.
    withdrawn = later.json() | {"status": "entered-in-error"}
    assert (
        client.put(
            f"/fhir/QuestionnaireResponse/{withdrawn['id']}", json=withdrawn, headers=auth | JSON
        ).status_code
        == 200
    )
    trend = next(
        t
        for t in client.get("/evaluations/outcome-measures?patient=eval-qr", headers=auth).json()["measures"]
        if t["measure"] == "berg"
    )
    assert [p["value"] for p in trend["series"]] == [28]
