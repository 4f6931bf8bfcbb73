"""Every error leaves a Relearn service as a FHIR OperationOutcome."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from relearn.shared.fhir.errors import FhirError, Issue, invalid_request, operation_outcome
from relearn.shared.fhir.response import FhirResponse

logger = logging.getLogger(__name__)

_ISSUE_CODE = {401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported", 409: "conflict"}


async def _fhir_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, FhirError)
    return FhirResponse(exc.to_operation_outcome(), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    error = invalid_request(exc.errors())
    return FhirResponse(error.to_operation_outcome(), status_code=error.status_code)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _ISSUE_CODE.get(exc.status_code, "processing")
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    outcome = operation_outcome([Issue(code, detail)])
    return FhirResponse(outcome, status_code=exc.status_code, headers=dict(exc.headers or {}))


# What a client is told to wait after a database error that a retry can fix.
DATABASE_RETRY_AFTER_S = 2


async def _database_error(request: Request, exc: Exception) -> Response:
    """A lost connection, a restarting or overloaded database, a deadlock: 503 + Retry-After, not 500.

    The request's transaction was rolled back, so nothing of it is stored and sending it again is safe.
    Other database errors (a constraint the code did not expect) stay 500: a retry would not help.
    """
    retryable = isinstance(exc, sa_exc.TimeoutError | sa_exc.OperationalError | sa_exc.InterfaceError) or (
        isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    )
    if not retryable:
        return await _unexpected(request, exc)
    logger.warning(
        "database unavailable",
        extra={
            "path": request.url.path,
            "method": request.method,
            "error": type(exc.__cause__ or exc).__name__,
        },
    )
    outcome = operation_outcome(
        [Issue("transient", "The database is unavailable for a moment (nothing was stored); retry shortly")]
    )
    return FhirResponse(outcome, status_code=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)})


async def _unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
    outcome = operation_outcome([Issue("exception", "Internal server error")])
    return FhirResponse(outcome, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """FhirError → its status; 400 for request validation (422 for a broken business rule); 404/405...;
    503 + Retry-After for a database error a retry can fix; 500 without internals."""
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(sa_exc.DBAPIError, _database_error)
    app.add_exception_handler(sa_exc.TimeoutError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
