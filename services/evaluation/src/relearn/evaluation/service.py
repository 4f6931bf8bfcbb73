"""Use cases of the evaluation service: record an evaluation, store device metrics and session outcomes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.evaluation import repository
from relearn.evaluation.domain import codes
from relearn.evaluation.domain.outcomes import verdict
from relearn.evaluation.domain.questionnaires import questionnaires, score
from relearn.evaluation.events import evaluation_completed_data, event_type, stage_evaluation
from relearn.evaluation.mapper import (
    DEVICE_STREAM_SYSTEM,
    condition_resources,
    evaluation_to_observations,
    home_practice_observations,
    is_set,
    metric_observation,
    outcome_code_tokens,
    outcome_coding,
    outcome_point,
    questionnaire_total_id,
    questionnaire_total_observation,
    rom_observations,
    session_outcome_observations,
    set_members,
    set_observation,
    set_streams,
    symptom_observation,
    trial_observation,
    with_members,
)
from relearn.evaluation.resources import QUESTIONNAIRE, QUESTIONNAIRE_RESPONSE
from relearn.evaluation.schemas import (
    EvaluationIn,
    McidOut,
    MetricComputed,
    OutcomePoint,
    OutcomeTrend,
    OutcomeTrends,
    SessionLogged,
    SymptomsRecorded,
    TrialSummarized,
)
from relearn.shared.fhir import Conflict, FhirStore, Forbidden, ResourceChange, WriteHook, publish_shipped
from relearn.shared.service import transaction

# Namespace for ids derived from a client's Idempotency-Key (a retried request gets the same ids).
_IDEMPOTENT_IDS = uuid.UUID("6f1d9a52-8c1e-4f4e-9b0e-2b7f5d2f1a10")


@dataclass(frozen=True)
class RecordedEvaluation:
    panel: dict[str, Any]
    members: list[dict[str, Any]]
    conditions: list[dict[str, Any]]
    event_type: str
    event_data: dict[str, Any]
    created: bool  # False when an Idempotency-Key replay found the evaluation already stored


def record_evaluation(
    session: Session,
    store: FhirStore,
    ev: EvaluationIn,
    *,
    idempotency_key: str | None = None,
    patient_restriction: str | None = None,
) -> RecordedEvaluation:
    """Store the evaluation as a panel Observation with ``hasMember`` members, its referral diagnoses as
    Conditions, and stage its event.

    The same use case serves the domain API and any future importer; it never commits (the caller's
    transaction does) and never talks to Kafka (the event goes to the outbox).
    """
    if patient_restriction is not None and patient_restriction != ev.patient:
        raise Forbidden(f"This token may only record evaluations of Patient/{patient_restriction}")

    if idempotency_key:
        seed = f"{ev.patient}|{idempotency_key}"

        def ids(path: str) -> str:
            return str(uuid.uuid5(_IDEMPOTENT_IDS, f"{seed}|{path}"))
    else:

        def ids(path: str) -> str:
            return str(uuid.uuid4())

    panel, members = evaluation_to_observations(ev, ids=ids)
    conditions = condition_resources(ev, ids=ids, panel_id=panel["id"])
    data = evaluation_completed_data(ev, panel, members, conditions)
    kind = event_type(ev)

    existing = repository.observation(session, store, panel["id"])
    if existing is not None:
        if existing.deleted or existing.resource().get("subject") != panel.get("subject"):
            raise Conflict("This Idempotency-Key was already used for another evaluation")
        return RecordedEvaluation(panel, members, conditions, kind, data, created=False)

    repository.create_conditions(session, store, conditions)
    repository.create_observations(session, store, [*members, panel])
    stage_evaluation(session, ev, data)
    return RecordedEvaluation(panel, members, conditions, kind, data, created=True)


def outcome_trends(
    session: Session, store: FhirStore, patient: str, *, patient_restriction: str | None = None
) -> OutcomeTrends:
    """Each outcome measure of ``patient`` (per side and muscle group) over time, with its MCID verdict:
    the latest value against the first (baseline)."""
    if patient_restriction is not None and patient_restriction != patient:
        raise Forbidden(f"This token may only read the outcomes of Patient/{patient_restriction}")
    groups: dict[tuple[str, str | None, str | None], list[dict[str, Any]]] = {}
    measures = {}
    for obs in repository.patient_observations(session, store, patient, outcome_code_tokens()):
        found = outcome_point(obs)
        if found is None:
            continue
        measure, side, group, point = found
        measures[measure.key] = measure
        groups.setdefault((measure.key, side, group), []).append(point)
    trends = []
    for (key, side, group), points in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        m = measures[key]
        points.sort(key=lambda p: str(p["effective"]))
        change, said = (
            verdict(m, points[0]["value"], points[-1]["value"]) if len(points) > 1 else (None, None)
        )
        coding = outcome_coding(m)
        trends.append(
            OutcomeTrend(
                measure=key,
                label=m.label,
                code=dict(coding),
                unit=m.unit,
                better=m.better,
                side=side,
                muscle_group=group,
                mcid=McidOut(
                    value=m.mcid.value,
                    unit="grade step" if key == "modified-ashworth" else m.unit,
                    kind=m.mcid.kind,
                    population=m.mcid.population,
                    source=m.mcid.source,
                ),
                series=[OutcomePoint(**p) for p in points],
                change=None if change is None else round(change, 6),
                verdict=said,
                improved_beyond_mcid=said == "improved-beyond-mcid",
            )
        )
    return OutcomeTrends(patient=patient, measures=trends)


def record_metric(session: Session, store: FhirStore, metric: MetricComputed) -> None:
    """A device metric becomes (or updates) its Observation; an unknown metric code raises (poison)."""
    repository.put_observation(session, store, metric_observation(metric))


def record_trial_summary(session: Session, store: FhirStore, summary: TrialSummarized) -> None:
    """One metric of a trial becomes (or updates) its Observation; a re-delivered summary that changes
    nothing writes nothing. An unknown metric code raises (poison)."""
    repository.put_observation_if_changed(session, store, trial_observation(summary))
    # The set (exercise) this trial belongs to, when the session was logged first: list it as a member.
    found = repository.observations_with_identifier(session, store, DEVICE_STREAM_SYSTEM, summary.stream)
    for stored in (o for o in found if is_set(o)):
        members = _trial_members(session, store, set_streams(stored))
        repository.put_observation_if_changed(session, store, with_members(stored, members))


def _trial_members(session: Session, store: FhirStore, streams: list[str]) -> list[str]:
    """The trial summary Observations stored for ``streams``."""
    members: list[str] = []
    for stream in streams:
        found = repository.observations_with_identifier(session, store, DEVICE_STREAM_SYSTEM, stream)
        members.extend(set_members(found))
    return members


def record_device_sets(session: Session, store: FhirStore, logged: SessionLogged) -> None:
    """One ``device-set`` Observation per exercise recorded with device streams, listing the trial summaries
    stored so far (those that arrive later add themselves)."""
    for ex in logged.exercises:
        if ex.deviceStreams:
            members = _trial_members(session, store, ex.deviceStreams)
            repository.put_observation_if_changed(session, store, set_observation(logged, ex, members))


def record_session_outcomes(session: Session, store: FhirStore, logged: SessionLogged) -> None:
    """Pain and quality scores of a logged session, the ROM each exercise reached, and home practice as
    Physical Activity IG exercise Observations."""
    for obs in session_outcome_observations(logged) + home_practice_observations(logged):
        repository.put_observation(session, store, obs)
    for obs in rom_observations(logged):
        repository.put_observation_if_changed(session, store, obs)
    record_device_sets(session, store, logged)


def record_symptoms(session: Session, store: FhirStore, symptoms: SymptomsRecorded) -> None:
    """The 24-hour pain response of a session as an Observation."""
    repository.put_observation(session, store, symptom_observation(symptoms))


def publish_codesystem(store: FhirStore, engine: Engine) -> None:
    """Store each shipped CodeSystem as ``CodeSystem/<id>`` unless that version is already there."""
    for cs in codes.codesystems():
        with transaction(engine) as session:
            stored = repository.code_system(session, store, cs["id"])
            if stored is not None and (stored.get("version"), stored.get("date"), stored.get("count")) == (
                cs.get("version"),
                cs.get("date"),
                cs.get("count"),
            ):
                continue
            repository.put_code_system(session, store, cs)


def publish_questionnaires(store: FhirStore, engine: Engine) -> None:
    """Store each scored test as ``Questionnaire/<id>`` unless the stored one already says the same."""
    publish_shipped(store, engine, QUESTIONNAIRE, questionnaires())


def questionnaire_total_hook(store: FhirStore) -> WriteHook:
    """A FHIR store write hook: a completed QuestionnaireResponse (validated by its ResourceDefinition) gets
    its total as an Observation, in the same transaction; a response withdrawn (deleted, entered-in-error,
    back in progress or stopped) marks that Observation entered-in-error."""

    def hook(session: Session, change: ResourceChange) -> None:
        if change.resource_type != QUESTIONNAIRE_RESPONSE.type:
            return
        total_id = questionnaire_total_id(change.id)
        response = change.resource
        obs = None
        if response is not None:
            obs = questionnaire_total_observation(response | {"id": change.id}, score(response))
        if obs is None:
            repository.withdraw_observation(session, store, total_id)
        else:
            repository.put_observation_if_changed(session, store, obs)

    return hook
