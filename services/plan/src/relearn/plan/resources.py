"""The FHIR resource types the plan service serves, and how each is searched."""

from __future__ import annotations

from fhir.resources.R4B.activitydefinition import ActivityDefinition
from fhir.resources.R4B.careplan import CarePlan
from fhir.resources.R4B.goal import Goal
from fhir.resources.R4B.plandefinition import PlanDefinition
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from relearn.shared.fhir import (
    PUBLISHED_INTERACTIONS,
    Interaction,
    ResourceDefinition,
    date,
    published_code_systems,
    reference,
    string,
    token,
)

_SP = "http://hl7.org/fhir/SearchParameter/"

# The plan state is the source of truth: the progression engine and the /plans API write every version, so
# over FHIR these resources are read, searched and their history followed, never written.
READ_ONLY: frozenset[Interaction] = frozenset(
    {"read", "vread", "search-type", "history-instance", "history-type"}
)

CARE_PLAN = ResourceDefinition(
    type="CarePlan",
    model=CarePlan,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}CarePlan-subject"),
        token("status", "status", definition=f"{_SP}CarePlan-status"),
        token("intent", "intent", definition=f"{_SP}CarePlan-intent"),
        token("category", "category", definition=f"{_SP}CarePlan-category"),
        date("date", "period", definition=f"{_SP}clinical-date"),
        reference("goal", "goal", targets=("Goal",), definition=f"{_SP}CarePlan-goal"),
        reference("activity-reference", "activity.reference", definition=f"{_SP}CarePlan-activity-reference"),
        reference("based-on", "basedOn", targets=("CarePlan",), definition=f"{_SP}CarePlan-based-on"),
        reference("replaces", "replaces", targets=("CarePlan",), definition=f"{_SP}CarePlan-replaces"),
    ],
    compartment_param="patient",
    includes=["goal", "activity-reference"],
    interactions=READ_ONLY,
    documentation="Neuromuscular re-education plans: exercises, progression level and competence stage.",
)

GOAL = ResourceDefinition(
    type="Goal",
    model=Goal,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}Goal-subject"),
        token("lifecycle-status", "lifecycleStatus", definition=f"{_SP}Goal-lifecycle-status"),
        token("achievement-status", "achievementStatus", definition=f"{_SP}Goal-achievement-status"),
        token("category", "category", definition=f"{_SP}Goal-category"),
        date("target-date", "target.due[x]", definition=f"{_SP}Goal-target-date"),
    ],
    compartment_param="patient",
    interactions=READ_ONLY,
    documentation="The patient's goals, in their words, with measurable targets.",
)

SERVICE_REQUEST = ResourceDefinition(
    type="ServiceRequest",
    model=ServiceRequest,
    search_params=[
        reference("patient", "subject", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "subject", definition=f"{_SP}ServiceRequest-subject"),
        token("status", "status", definition=f"{_SP}ServiceRequest-status"),
        token("code", "code", definition=f"{_SP}clinical-code"),
        token("category", "category", definition=f"{_SP}ServiceRequest-category"),
        reference(
            "based-on",
            "basedOn",
            targets=("CarePlan", "ServiceRequest"),
            definition=f"{_SP}ServiceRequest-based-on",
        ),
        date("authored", "authoredOn", definition=f"{_SP}ServiceRequest-authored"),
    ],
    compartment_param="patient",
    includes=["based-on"],
    interactions=READ_ONLY,
    documentation="Exercise prescriptions (Physical Activity IG): one per plan activity, with its dose.",
)

TASK = ResourceDefinition(
    type="Task",
    model=Task,
    search_params=[
        reference("patient", "for", targets=("Patient",), definition=f"{_SP}clinical-patient"),
        reference("subject", "for", definition=f"{_SP}Task-subject"),
        reference("focus", "focus", definition=f"{_SP}Task-focus"),
        reference("owner", "owner", definition=f"{_SP}Task-owner"),
        token("status", "status", definition=f"{_SP}Task-status"),
        token("code", "code", definition=f"{_SP}Task-code"),
        date("authored-on", "authoredOn", definition=f"{_SP}Task-authored-on"),
    ],
    compartment_param="patient",
    interactions=READ_ONLY,
    documentation="Questions for the therapist raised by the progression engine: approve an advance for a "
    "patient at fall risk, review an advance that symptoms undid repeatedly. Answered through "
    "POST /plans/{id}/tasks/{taskId}/approve|reject.",
)

# Who made each CarePlan, Goal and ServiceRequest version, and why: written with the version, by the engine
# or for a therapist's edit (and a client's own X-Provenance beside it). In the Patient compartment through
# the plan-patient extension (a Provenance's targets are the plan's resources, not the Patient).
PROVENANCE = ResourceDefinition(
    type="Provenance",
    model=Provenance,
    search_params=[
        reference("target", "target", definition=f"{_SP}Provenance-target"),
        reference("patient", "extension.valueReference", targets=("Patient",)),
        reference("agent", "agent.who", definition=f"{_SP}Provenance-agent"),
        reference("entity", "entity.what", definition=f"{_SP}Provenance-entity"),
        date("recorded", "recorded", definition=f"{_SP}Provenance-recorded"),
        token("agent-type", "agent.type", definition=f"{_SP}Provenance-agent-type"),
    ],
    compartment_param="patient",
    interactions=READ_ONLY,
    documentation="Provenance of every CarePlan, Goal and ServiceRequest version: the engine (Device) or the "
    "therapist, the client application, the decision or override that caused it; clients may add their own "
    "with an X-Provenance header on plan writes.",
)

# The local CodeSystems (competence stage, dimension, category, movement pattern), published read-only.
CODE_SYSTEM = published_code_systems(
    "Relearn's local codes for care plans: competence stage, progression dimension, category "
    "and movement pattern."
)


def _definitional(
    rtype: str, model: type[ActivityDefinition] | type[PlanDefinition], doc: str
) -> ResourceDefinition:
    return ResourceDefinition(
        type=rtype,
        model=model,
        search_params=[
            token("url", "url", definition=f"{_SP}{rtype}-url"),
            token("version", "version", definition=f"{_SP}{rtype}-version"),
            token("status", "status", definition=f"{_SP}{rtype}-status"),
            string("name", "name", definition=f"{_SP}{rtype}-name"),
            string("title", "title", definition=f"{_SP}{rtype}-title"),
        ],
        interactions=PUBLISHED_INTERACTIONS,
        documentation=doc,
    )


# The catalogue as FHIR definitions, published read-only at startup (they change with the catalogue).
ACTIVITY_DEFINITION = _definitional(
    "ActivityDefinition",
    ActivityDefinition,
    "The movement-pattern catalogue: one ActivityDefinition per pattern (starting form, ladders, dose, "
    "evidence), named by ServiceRequest.instantiatesCanonical.",
)
PLAN_DEFINITION = _definitional(
    "PlanDefinition",
    PlanDefinition,
    "The drafting and progression ladder (deficit -> pattern, one dimension at a time), named by "
    "CarePlan.instantiatesCanonical.",
)

DEFINITIONS = [
    CARE_PLAN,
    GOAL,
    SERVICE_REQUEST,
    TASK,
    PROVENANCE,
    CODE_SYSTEM,
    ACTIVITY_DEFINITION,
    PLAN_DEFINITION,
]
