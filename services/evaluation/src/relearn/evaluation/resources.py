"""The FHIR resource types the evaluation service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaire import Questionnaire
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from relearn.evaluation.domain.questionnaires import check_response
from relearn.shared.fhir import (
    OBSERVATION_PARAMS,
    PUBLISHED_INTERACTIONS,
    ResourceDefinition,
    date,
    published_code_systems,
    reference,
    string,
    token,
)

_SP = "http://hl7.org/fhir/SearchParameter/"
_US_CORE_SP = "http://hl7.org/fhir/us/core/SearchParameter/"

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=OBSERVATION_PARAMS,
    compartment_param="patient",
    includes=["has-member", "derived-from"],
    documentation="Every measurement: evaluations, re-assessments, session outcomes, device metrics.",
)

# Referral diagnoses (US Core 6.1 Condition profiles) with the searches US Core asks of a server.
CONDITION = ResourceDefinition(
    type="Condition",
    model=Condition,
    search_params=[
        reference(
            "patient", "subject", targets=("Patient",), definition=f"{_US_CORE_SP}us-core-condition-patient"
        ),
        reference("subject", "subject", definition=f"{_SP}Condition-subject"),
        token("identifier", "identifier", definition=f"{_SP}Condition-identifier"),
        token("category", "category", definition=f"{_US_CORE_SP}us-core-condition-category"),
        token("code", "code", definition=f"{_US_CORE_SP}us-core-condition-code"),
        token(
            "clinical-status",
            "clinicalStatus",
            definition=f"{_US_CORE_SP}us-core-condition-clinical-status",
        ),
        token("verification-status", "verificationStatus", definition=f"{_SP}Condition-verification-status"),
        date(
            "onset-date",
            "onsetDateTime",
            "onsetPeriod",
            definition=f"{_US_CORE_SP}us-core-condition-onset-date",
        ),
        date("recorded-date", "recordedDate", definition=f"{_US_CORE_SP}us-core-condition-recorded-date"),
        reference(
            "encounter",
            "encounter",
            targets=("Encounter",),
            definition=f"{_US_CORE_SP}us-core-condition-encounter",
        ),
    ],
    compartment_param="patient",
    documentation="Referral diagnoses (stroke, brain injury, trauma) as US Core Conditions.",
)

# The local CodeSystem is published read-only: it changes with the code, not through the API.
CODE_SYSTEM = published_code_systems(
    "Relearn's local codes for neuromuscular evaluation, session outcomes and device metrics."
)

# Scored clinical tests (Berg Balance Scale, Functional Gait Assessment), published read-only.
QUESTIONNAIRE = ResourceDefinition(
    type="Questionnaire",
    model=Questionnaire,
    search_params=[
        token("url", "url", definition=f"{_SP}Questionnaire-url"),
        token("version", "version", definition=f"{_SP}Questionnaire-version"),
        token("status", "status", definition=f"{_SP}Questionnaire-status"),
        string("name", "name", definition=f"{_SP}Questionnaire-name"),
        string("title", "title", definition=f"{_SP}Questionnaire-title"),
    ],
    interactions=PUBLISHED_INTERACTIONS,
    documentation="Scored clinical tests whose item scores matter: Berg Balance Scale (14 items, 0-4), "
    "Functional Gait Assessment (10 items, 0-3).",
)

# A patient's answers to one of them; the total is extracted to an Observation (derivedFrom the response).
QUESTIONNAIRE_RESPONSE = ResourceDefinition(
    type="QuestionnaireResponse",
    model=QuestionnaireResponse,
    search_params=[
        reference(
            "patient", "subject", targets=("Patient",), definition=f"{_SP}QuestionnaireResponse-patient"
        ),
        reference("subject", "subject", definition=f"{_SP}QuestionnaireResponse-subject"),
        token("questionnaire", "questionnaire", definition=f"{_SP}QuestionnaireResponse-questionnaire"),
        token("status", "status", definition=f"{_SP}QuestionnaireResponse-status"),
        date("authored", "authored", definition=f"{_SP}QuestionnaireResponse-authored"),
        reference("encounter", "encounter", definition=f"{_SP}QuestionnaireResponse-encounter"),
    ],
    compartment_param="patient",
    validators=[check_response],
    documentation="Answers to a scored test (Questionnaire/berg-balance-scale, "
    "Questionnaire/functional-gait-assessment): every item checked against its range, the total extracted "
    "to an Observation coded as the outcome measure.",
)

DEFINITIONS = [OBSERVATION, CONDITION, CODE_SYSTEM, QUESTIONNAIRE, QUESTIONNAIRE_RESPONSE]
