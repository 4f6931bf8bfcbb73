"""A FastAPI route guarded by PrincipalDep + require_scope, with the real JwtVerifier."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from relearn.dev_issuer import DevIssuer
from relearn.shared.auth.dependency import PrincipalDep, require_scope
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.tokens import JwtVerifier
from relearn.shared.fhir.errors import FhirError


@pytest.fixture
def http(verifier: JwtVerifier) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.token_verifier = verifier

    # The same rendering the services' error handler does: OperationOutcome + the error's headers.
    @app.exception_handler(FhirError)
    async def _fhir_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, FhirError)
        return JSONResponse(exc.to_operation_outcome(), status_code=exc.status_code, headers=exc.headers)

    @app.get("/Observation")
    def search(
        principal: Annotated[Principal, Depends(require_scope("Observation", "read"))],
    ) -> dict[str, Any]:
        return {
            "client": principal.client_id,
            "patient": principal.patient_restriction("Observation", "read"),
        }

    @app.get("/whoami")
    def whoami(principal: PrincipalDep) -> dict[str, Any]:
        return {"subject": principal.subject}

    with TestClient(app) as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401(http: TestClient) -> None:
    response = http.get("/Observation")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_invalid_token_is_401_with_invalid_token_challenge(http: TestClient, issuer: DevIssuer) -> None:
    expired = issuer.mint("relearn-dev", "system/Observation.read", ttl_s=-300)
    response = http.get("/Observation", headers=_bearer(expired))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "expired" in response.json()["issue"][0]["diagnostics"]


def test_wrong_scope_is_403(http: TestClient, issuer: DevIssuer) -> None:
    token = issuer.mint("relearn-dev", "system/CarePlan.read")
    response = http.get("/Observation", headers=_bearer(token))
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    # Authenticated all the same: a route without a scope requirement lets it in.
    assert http.get("/whoami", headers=_bearer(token)).json() == {"subject": "relearn-dev"}


def test_right_scope_is_200(http: TestClient, issuer: DevIssuer) -> None:
    response = http.get("/Observation", headers=_bearer(issuer.mint("ehr-demo", "system/Observation.read")))
    assert response.status_code == 200
    assert response.json() == {"client": "ehr-demo", "patient": None}


def test_patient_token_sees_its_patient_only(http: TestClient, issuer: DevIssuer) -> None:
    token = issuer.mint("relearn-dev", "patient/Observation.read", patient="pat-9")
    response = http.get("/Observation", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json() == {"client": "relearn-dev", "patient": "pat-9"}
