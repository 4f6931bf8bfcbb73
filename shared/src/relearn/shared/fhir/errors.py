"""The one error type of Relearn, rendered everywhere as a FHIR OperationOutcome.

Raise :class:`FhirError` (or one of its named subclasses) from routes, services and
the FHIR store; the handler installed by :func:`relearn.shared.app.create_service_app`
turns it into ``application/fhir+json`` with the status it carries.

    FhirError(status, code, diagnostics, expression)
      +-- InvalidResource   400 invalid      (a field of the resource is wrong)
      +-- InvalidRequest    400 invalid      (a parameter or header is wrong)
      +-- Unauthorized      401 login
      +-- Forbidden         403 forbidden
      +-- NotFound          404 not-found
      +-- Gone              410 deleted
      +-- MethodNotAllowed  405 not-supported
      +-- NotAcceptable     406 not-supported  (_format / Accept asks for XML)
      +-- UnsupportedMediaType 415 not-supported (the body is not FHIR JSON)
      +-- Conflict          409 conflict
      +-- PreconditionFailed 412 conflict    (If-Match / conditional with several matches)
      +-- UnprocessableEntity 422 processing (valid FHIR that breaks a business rule)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    """One OperationOutcome.issue: what went wrong and where (a FHIRPath expression)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: list[str] = field(default_factory=list)

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """An error with an HTTP status and one or more OperationOutcome issues."""

    status_code: int = 400
    issue_code: str = "processing"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: Sequence[str] | str | None = None,
        status_code: int | None = None,
        issue_code: str | None = None,
        issues: Sequence[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        if status_code is not None:
            self.status_code = status_code
        if issue_code is not None:
            self.issue_code = issue_code
        exprs = [expression] if isinstance(expression, str) else list(expression or [])
        self.issues: list[Issue] = (
            list(issues) if issues else [Issue(self.issue_code, diagnostics, "error", exprs)]
        )
        self.headers = headers or {}

    def to_operation_outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class InvalidResource(FhirError):
    status_code = 400
    issue_code = "invalid"


class InvalidRequest(FhirError):
    status_code = 400
    issue_code = "invalid"


class Unauthorized(FhirError):
    status_code = 401
    issue_code = "login"


class Forbidden(FhirError):
    status_code = 403
    issue_code = "forbidden"


class NotFound(FhirError):
    status_code = 404
    issue_code = "not-found"


class Gone(FhirError):
    status_code = 410
    issue_code = "deleted"


class MethodNotAllowed(FhirError):
    status_code = 405
    issue_code = "not-supported"


class NotAcceptable(FhirError):
    status_code = 406
    issue_code = "not-supported"


class UnsupportedMediaType(FhirError):
    status_code = 415
    issue_code = "not-supported"


class Conflict(FhirError):
    status_code = 409
    issue_code = "conflict"


class PreconditionFailed(FhirError):
    status_code = 412
    issue_code = "conflict"


class UnprocessableEntity(FhirError):
    status_code = 422
    issue_code = "processing"


def operation_outcome(issues: Sequence[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def informational_outcome(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("informational", message, "information")])


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic error location as a FHIRPath-style path: ``("rom", 0, "degrees")`` → ``rom[0].degrees``."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


# Error type of a rule between fields (raise ``PydanticCustomError(BUSINESS_RULE, message)`` in a validator):
# the request is well formed but cannot be accepted, so its issue is ``business-rule`` and the answer a 422.
BUSINESS_RULE = "business-rule"


def validation_issues(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> list[Issue]:
    """One issue per pydantic error, naming the field: ``rom[0].degrees: 400 is outside ...``.

    Malformed or out-of-range values are ``invalid``; a :data:`BUSINESS_RULE` error is ``business-rule``.
    An error of the whole body is named ``(body)``.
    """
    issues = []
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        path = field_path(loc, prefix)
        kind = err.get("type")
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        code = "invalid"
        if kind == BUSINESS_RULE:
            code = "business-rule"
        elif kind == "extra_forbidden":
            message = "is not a known field"
        elif kind == "missing":
            message = "is required"
        elif kind == "json_invalid":
            path = ""
            message = f"is not valid JSON ({(err.get('ctx') or {}).get('error', 'decode error')})"
        path = path or "(body)"
        issues.append(Issue(code, f"{path}: {message}", "error", [path]))
    return issues


def invalid_request(errors: Sequence[Mapping[str, Any]], prefix: str = "") -> InvalidResource:
    """The error for a request that failed validation: 400, or 422 when a :data:`BUSINESS_RULE` is broken
    (every issue is still listed)."""
    issues = validation_issues(errors, prefix) or [
        Issue("invalid", "(body): invalid request", "error", ["(body)"])
    ]
    rule_broken = any(i.code == "business-rule" for i in issues)
    return InvalidResource(issues[0].diagnostics, issues=issues, status_code=422 if rule_broken else None)
