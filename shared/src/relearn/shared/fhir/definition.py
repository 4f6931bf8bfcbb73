"""What a service declares for each FHIR resource type it serves.

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,                      # fhir.resources.R4B.observation.Observation
    search_params=[token("code", "code"), reference("patient", "subject", targets=("Patient",)),
                   date("date", "effective[x]"), reference("has-member", "hasMember")],
    compartment_param="patient",            # ties an Observation to its patient
    includes=["has-member"],                # _include=Observation:has-member
)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir.resources.R4B.codesystem import CodeSystem

from relearn.shared.fhir.search_params import SearchParam, string, token

Interaction = Literal[
    "read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"
]
ALL_INTERACTIONS: frozenset[Interaction] = frozenset(
    {"read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"}
)

# A fhir.resources R4B model class (named here because the field ``type`` shadows the builtin).
ModelClass = type[Any]

# A validator gets the parsed resource (decimals as Decimal) after the model accepted it and
# raises a FhirError (usually InvalidResource naming the element) to refuse it.
Validator = Callable[[dict[str, Any]], None]

# compartment_param value meaning "the resource is the patient" (Patient itself).
SELF_COMPARTMENT = "_id"


@dataclass(frozen=True)
class ResourceDefinition:
    """A resource type served by a store and its routes.

    ``compartment_param`` names the reference search parameter (targeting Patient) whose
    value places a resource in a patient's compartment, or ``"_id"`` for Patient itself.
    Types without one are invisible to patient-restricted tokens.
    """

    type: str
    model: ModelClass
    search_params: Sequence[SearchParam] = ()
    compartment_param: str | None = None
    profile: str | None = None
    validators: Sequence[Validator] = ()
    # Reference parameters that may be used in ``_include`` (and, from the other side, ``_revinclude``).
    includes: Sequence[str] = ()
    interactions: Collection[Interaction] = ALL_INTERACTIONS
    documentation: str = ""
    params: Mapping[str, SearchParam] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        model_type = getattr(self.model, "get_resource_type", lambda: None)()
        if model_type != self.type:
            raise ValueError(f"model {self.model.__name__} is {model_type}, not {self.type}")
        params: dict[str, SearchParam] = {}
        for p in self.search_params:
            if p.name in params:
                raise ValueError(f"{self.type}: search parameter {p.name!r} declared twice")
            params[p.name] = p
        object.__setattr__(self, "params", params)
        if self.compartment_param not in (None, SELF_COMPARTMENT):
            cp = params.get(self.compartment_param)
            if cp is None or cp.kind != "reference" or (cp.targets and "Patient" not in cp.targets):
                raise ValueError(
                    f"{self.type}: compartment_param {self.compartment_param!r} must be a declared reference "
                    "parameter that can target Patient"
                )
        for name in self.includes:
            if name not in params or params[name].kind != "reference":
                raise ValueError(f"{self.type}: include {name!r} is not a declared reference parameter")
        unknown = set(self.interactions) - ALL_INTERACTIONS
        if unknown:
            raise ValueError(f"{self.type}: unknown interactions {sorted(unknown)}")

    def supports(self, interaction: Interaction) -> bool:
        return interaction in self.interactions


# Shipped CodeSystems are read over FHIR, never written: they change with the code.
PUBLISHED_INTERACTIONS: frozenset[Interaction] = frozenset(
    {"read", "vread", "search-type", "history-instance"}
)


def published_code_systems(documentation: str) -> ResourceDefinition:
    """``CodeSystem`` served read-only: the local CodeSystems a service ships and publishes at startup."""
    return ResourceDefinition(
        type="CodeSystem",
        model=CodeSystem,
        search_params=[
            token("url", "url"),
            token("version", "version"),
            token("status", "status"),
            string("name", "name"),
            string("title", "title"),
        ],
        interactions=PUBLISHED_INTERACTIONS,
        documentation=documentation,
    )
