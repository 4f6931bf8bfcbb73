"""Resource validation: the R4B model, required code bindings, then the definition's own validators.

Errors become :class:`InvalidResource` with one issue per problem, each naming the element
as a FHIRPath-ish expression (``Observation.component[0].valueQuantity.value``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from relearn.shared.fhir.errors import InvalidResource, Issue

if TYPE_CHECKING:
    from relearn.shared.fhir.definition import ResourceDefinition

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

# fhir.resources lists each required binding's codes in ``enum_values``, except where the value
# set has child codes (it ends the list with "+") and for Quantity.comparator. The complete R4
# value sets for those:
_OBSERVATION_STATUS = "registered preliminary final amended corrected cancelled entered-in-error unknown"
_ENCOUNTER_STATUS = "planned arrived triaged in-progress onleave finished cancelled entered-in-error unknown"
_COMPLETED_BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    key: frozenset(codes.split())
    for key, codes in {
        ("Observation", "status"): _OBSERVATION_STATUS,
        ("DetectedIssue", "status"): _OBSERVATION_STATUS,
        ("RiskAssessment", "status"): _OBSERVATION_STATUS,
        ("DiagnosticReport", "status"): "registered partial preliminary final amended corrected appended "
        "cancelled entered-in-error unknown",
        ("Encounter", "status"): _ENCOUNTER_STATUS,
        ("EncounterStatusHistory", "status"): _ENCOUNTER_STATUS,
        ("DeviceUdiCarrier", "entryType"): "barcode rfid manual card self-reported unknown",
        ("DeviceUseStatement", "status"): "active completed entered-in-error intended stopped on-hold",
        (
            "QuestionnaireItem",
            "type",
        ): "group display question boolean decimal integer date dateTime time string "
        "text url choice open-choice attachment reference quantity",
        ("SupplyRequest", "status"): "draft active suspended cancelled completed entered-in-error unknown",
        (
            "Task",
            "status",
        ): "draft requested received accepted rejected ready cancelled in-progress on-hold failed "
        "completed entered-in-error",
        ("StructureMapGroupRuleTarget", "transform"): "create copy truncate escape cast append translate "
        "reference dateOp uuid pointer evaluate cc c qty id cp",
        # Quantity's comparator has no enum_values in fhir.resources at all.
        **{(q, "comparator"): "< <= >= >" for q in ("Quantity", "Age", "Count", "Distance", "Duration")},
    }.items()
}

_TITLE_TAIL = re.compile(r" - | \(")
_ELEMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CHOICE_LIST = re.compile(r"expected from this list \['([a-z][A-Za-z]*?)[A-Z]")


def validate_resource(rdef: ResourceDefinition, resource: dict[str, Any]) -> None:
    """Raise :class:`InvalidResource` unless ``resource`` is a valid ``rdef.type``."""
    try:
        instance = rdef.model.model_validate(resource)
    except ValidationError as exc:
        issues = [_issue_from_pydantic(rdef.type, err) for err in exc.errors()]
        raise InvalidResource(issues[0].diagnostics, issues=issues) from None
    except (KeyError, TypeError, AttributeError) as exc:
        # fhir.resources looks a contained resource's type up by name and fails with KeyError on a
        # resourceType it does not know ("" too): the resource is invalid, not the server broken.
        raise InvalidResource(
            f"{rdef.type} is not valid: a contained or nested resource has an unknown or missing "
            f"resourceType ({type(exc).__name__}: {exc})"
        ) from None
    issues = list(_binding_issues(instance, rdef.type))
    if issues:
        raise InvalidResource(issues[0].diagnostics, issues=issues)
    for validator in rdef.validators:
        validator(resource)


def _issue_from_pydantic(rtype: str, err: Any) -> Issue:
    parts = [rtype]
    for item in err.get("loc", ()):
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif isinstance(item, str) and _ELEMENT.match(item):
            parts.append("resourceType" if item == "resource_type" else item)
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    etype = err.get("type", "")
    if etype == "extra_forbidden":
        msg = f"Unknown element '{parts[-1]}'"
    elif etype in ("missing", "model_field_validation.missing"):
        msg = f"Required element '{parts[-1]}' is missing"
    choice = _CHOICE_LIST.search(msg)
    if choice and len(parts) == 1:
        parts.append(f"{choice.group(1)}[x]")
    code = "required" if "missing" in etype else "structure" if etype == "extra_forbidden" else "value"
    return Issue(code, msg, "error", [".".join(parts)])


def _allowed_codes(model: type[BaseModel], name: str, alias: str) -> frozenset[str] | None:
    completed = _COMPLETED_BINDINGS.get((model.__name__, alias))
    if completed is not None:
        return completed
    field = model.model_fields[name]
    extra = field.json_schema_extra
    values = extra.get("enum_values") if isinstance(extra, dict) else None
    if not isinstance(values, list) or not values or "+" in values:
        return None
    # enum_values are parsed from the element's short title ("a | b | c - note"); trust them only
    # when the title is exactly that list (CapabilityStatement.format's title is prose, for one).
    head = _TITLE_TAIL.split(field.title or "", maxsplit=1)[0]
    if [p.strip() for p in head.split("|")] != [str(v) for v in values]:
        return None
    return frozenset(str(v) for v in values)


def _binding_issues(node: BaseModel, path: str) -> list[Issue]:
    """Codes outside a required binding, anywhere in the validated model tree."""
    issues: list[Issue] = []
    model = type(node)
    for name, field in model.model_fields.items():
        value = getattr(node, name, None)
        if value is None:
            continue
        alias = field.alias or name
        items = value if isinstance(value, list) else [value]
        allowed = _allowed_codes(model, name, alias)
        for i, item in enumerate(items):
            where = f"{path}.{alias}" + (f"[{i}]" if isinstance(value, list) else "")
            if isinstance(item, BaseModel):
                issues.extend(_binding_issues(item, where))
            elif allowed is not None and isinstance(item, str) and item not in allowed:
                issues.append(
                    Issue(
                        "code-invalid",
                        f"'{item}' is not one of: {' | '.join(sorted(allowed))}",
                        "error",
                        [where],
                    )
                )
    return issues
