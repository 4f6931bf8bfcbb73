"""HTTP routes of the domain API: record an evaluation (or a re-assessment) in one call."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from relearn.evaluation.schemas import EvaluationIn, EvaluationRecorded, OutcomeTrends
from relearn.evaluation.service import outcome_trends, record_evaluation
from relearn.shared.auth import PrincipalDep
from relearn.shared.fhir import FhirStore
from relearn.shared.service import SessionDep


def evaluation_router(store: FhirStore, fhir_base_url: str) -> APIRouter:
    router = APIRouter(prefix="/evaluations", tags=["evaluations"])

    @router.post(
        "",
        status_code=201,
        response_model=EvaluationRecorded,
        response_model_by_alias=True,
        summary="Record an initial evaluation or a re-assessment",
        responses={
            200: {"description": "Replay of an Idempotency-Key: the evaluation stored earlier"},
            400: {"description": "OperationOutcome naming each invalid field (e.g. rom[1].degrees)"},
            401: {"description": "No or invalid bearer token"},
            403: {"description": "Scopes do not allow Observation write, or another patient's evaluation"},
        },
    )
    def record(
        evaluation: EvaluationIn,
        principal: PrincipalDep,
        session: SessionDep,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(description="Retry-safe key: the same key returns the evaluation already stored"),
        ] = None,
    ) -> EvaluationRecorded:
        """History, pain, posture, balance tests, range of motion, strength, concerns and goals become a
        panel Observation with one member per finding, in one transaction; deficits are judged against
        the service's normative values and sent to the plan service in ``evaluation.completed.v1``
        (``evaluation.reassessed.v1`` for a re-assessment)."""
        principal.require("Observation", "c")
        result = record_evaluation(
            session,
            store,
            evaluation,
            idempotency_key=idempotency_key,
            patient_restriction=principal.patient_restriction("Observation", "c"),
        )
        panel_id = result.panel["id"]
        response.headers["Location"] = f"{fhir_base_url}/Observation/{panel_id}"
        if not result.created:
            response.status_code = 200
        return EvaluationRecorded(
            evaluation=f"Observation/{panel_id}",
            kind=evaluation.kind,
            event_type=result.event_type,
            members=[f"Observation/{m['id']}" for m in result.members],
            conditions=[f"Condition/{c['id']}" for c in result.conditions],
            deficits=result.event_data["deficits"],
            goals=result.event_data["goals"],
        )

    @router.get(
        "/outcome-measures",
        response_model=OutcomeTrends,
        response_model_by_alias=True,
        summary="A patient's standard outcome measures over time, each against its MCID",
        responses={
            401: {"description": "No or invalid bearer token"},
            403: {"description": "Scopes do not allow Observation read, or another patient's outcomes"},
        },
    )
    def outcomes(
        principal: PrincipalDep,
        session: SessionDep,
        patient: Annotated[str, Query(pattern=r"^[A-Za-z0-9\-.]{1,64}$", description="Patient id")],
    ) -> OutcomeTrends:
        """Berg, Fugl-Meyer, 10-metre walk, 6-minute walk, five-times sit-to-stand, Functional Gait
        Assessment, ARAT and Modified Ashworth as recorded in evaluations: per measure (and side, muscle
        group) the series, the change from the first to the latest value, and whether it improved beyond
        the measure's minimal clinically important difference (with its published source)."""
        principal.require("Observation", "s")  # a query over the patient's Observations
        return outcome_trends(
            session, store, patient, patient_restriction=principal.patient_restriction("Observation", "s")
        )

    return router
