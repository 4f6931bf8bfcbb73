"""Every read and write of the evaluation's Observations, Conditions and CodeSystems in its FHIR store."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session

from relearn.evaluation.resources import CODE_SYSTEM, CONDITION, OBSERVATION
from relearn.shared.fhir import OFFSET_PARAM, FhirStore, StoredResource


def observation(session: Session, store: FhirStore, observation_id: str) -> StoredResource | None:
    """The current version of ``Observation/<observation_id>`` (deleted or not), or None."""
    return store.get(session, OBSERVATION.type, observation_id)


def create_observations(session: Session, store: FhirStore, observations: list[dict[str, Any]]) -> None:
    """Store new Observations under their own ids, in order."""
    for obs in observations:
        store.create(session, OBSERVATION, obs, id=obs["id"])


def create_conditions(session: Session, store: FhirStore, conditions: list[dict[str, Any]]) -> None:
    """Store new Conditions under their own ids, in order."""
    for cond in conditions:
        store.create(session, CONDITION, cond, id=cond["id"])


def patient_observations(
    session: Session, store: FhirStore, patient: str, code_tokens: list[str], *, page: int = 500
) -> list[dict[str, Any]]:
    """Current Observations of ``patient`` with a code in ``code_tokens`` (``system|code``), oldest first."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        params = [
            ("patient", f"Patient/{patient}"),
            ("code", ",".join(code_tokens)),
            ("_sort", "date"),
            ("_count", str(page)),
            (OFFSET_PARAM, str(offset)),
        ]
        result = store.search(session, OBSERVATION, params)
        out.extend(r.resource() for r in result.matches)
        if len(result.matches) < page:
            return out
        offset += page


def observations_with_identifier(
    session: Session, store: FhirStore, system: str, value: str, *, limit: int = 200
) -> list[dict[str, Any]]:
    """Current Observations carrying the identifier ``system|value`` (at most ``limit``)."""
    params = [("identifier", f"{system}|{value}"), ("_count", str(limit))]
    return [r.resource() for r in store.search(session, OBSERVATION, params).matches]


def put_observation(session: Session, store: FhirStore, obs: dict[str, Any]) -> None:
    """Create or update ``obs`` under its id (a new version each time)."""
    store.update(session, OBSERVATION, obs["id"], obs)


def put_observation_if_changed(session: Session, store: FhirStore, obs: dict[str, Any]) -> None:
    """As :func:`put_observation`, but a replay the stored version already says exactly writes nothing."""
    current = observation(session, store, obs["id"])
    if (
        current is not None
        and not current.deleted
        and current.text
        and _content(json.loads(current.text)) == _content(json.loads(json.dumps(obs)))
    ):
        return
    put_observation(session, store, obs)


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource without what the store stamps (meta.versionId, meta.lastUpdated)."""
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    return out | {"meta": meta} if meta else out


def code_system(session: Session, store: FhirStore, code_system_id: str) -> dict[str, Any] | None:
    """The stored CodeSystem ``code_system_id``, or None when absent or deleted."""
    current = store.get(session, CODE_SYSTEM.type, code_system_id)
    return None if current is None or current.deleted else current.resource()


def put_code_system(session: Session, store: FhirStore, cs: dict[str, Any]) -> None:
    store.update(session, CODE_SYSTEM, cs["id"], dict(cs))


def withdraw_observation(session: Session, store: FhirStore, observation_id: str) -> None:
    """Mark ``Observation/<id>`` entered-in-error (a new version) when it exists and is not already."""
    current = observation(session, store, observation_id)
    if current is None or current.deleted or not current.text:
        return
    obs = {k: v for k, v in json.loads(current.text).items() if k != "meta"}
    if obs.get("status") != "entered-in-error":
        put_observation(session, store, obs | {"status": "entered-in-error"})
