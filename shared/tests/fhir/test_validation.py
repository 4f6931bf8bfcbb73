"""Validation accepts every official R4 example of every type (so services can declare any of them),
and refuses codes outside required bindings that the R4B models let through."""

from __future__ import annotations

from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from relearn.shared.fhir import jsontext
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import InvalidResource
from relearn.shared.fhir.validation import validate_resource

R4 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fhir-examples" / "R4"


def _definition(rtype: str) -> ResourceDefinition:
    return ResourceDefinition(type=rtype, model=get_fhir_model_class(rtype))


@pytest.mark.parametrize("path", sorted(R4.glob("*.json")), ids=lambda p: p.stem)
def test_every_official_example_validates(path: Path) -> None:
    resource = jsontext.loads(path.read_bytes())
    validate_resource(_definition(resource["resourceType"]), resource)


@pytest.mark.parametrize(
    ("rtype", "resource", "expression"),
    [
        ("Observation", {"status": "done", "code": {"text": "x"}}, "Observation.status"),
        ("Patient", {"gender": "f"}, "Patient.gender"),
        ("Patient", {"name": [{"use": "nick"}]}, "Patient.name[0].use"),
        (
            "CarePlan",
            {"status": "active", "intent": "wish", "subject": {"reference": "Patient/1"}},
            "CarePlan.intent",
        ),
        ("Task", {"status": "doing", "intent": "order"}, "Task.status"),
    ],
)
def test_codes_outside_required_bindings_are_refused(
    rtype: str, resource: dict[str, object], expression: str
) -> None:
    with pytest.raises(InvalidResource) as caught:
        validate_resource(_definition(rtype), {"resourceType": rtype, **resource})
    assert caught.value.issues[0].expression == [expression]


def test_a_definitions_own_validators_run_after_the_model() -> None:
    def needs_subject(resource: dict[str, object]) -> None:
        if "subject" not in resource:
            raise InvalidResource("An Observation needs a subject here", expression="Observation.subject")

    rdef = ResourceDefinition(
        type="Observation", model=get_fhir_model_class("Observation"), validators=[needs_subject]
    )
    with pytest.raises(InvalidResource, match="needs a subject"):
        validate_resource(rdef, {"resourceType": "Observation", "status": "final", "code": {"text": "x"}})


@pytest.mark.parametrize("contained_type", ["", "Nope", None, 1])
def test_a_contained_resource_of_unknown_type_is_invalid_not_a_server_error(contained_type: object) -> None:
    """Found by make fuzz once bodies were typed: fhir.resources raised KeyError/TypeError (a 500)."""
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "contained": [{"resourceType": contained_type}],
    }
    with pytest.raises(InvalidResource):
        validate_resource(_definition("Observation"), resource)
