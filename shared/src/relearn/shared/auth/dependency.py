"""The FastAPI dependency every route uses: a verified bearer token becomes a Principal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from relearn.shared.audit_context import note_principal
from relearn.shared.auth.principal import Principal
from relearn.shared.auth.scopes import Access
from relearn.shared.fhir.errors import Unauthorized

_bearer = HTTPBearer(auto_error=False, description="OAuth2 bearer JWT with SMART scopes")


class TokenVerifier(Protocol):
    def verify(self, token: str) -> Principal: ...


def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized(
            "A bearer token is required", headers={"WWW-Authenticate": 'Bearer realm="relearn"'}
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    principal = verifier.verify(credentials.credentials)
    request.state.principal = principal
    note_principal(principal)
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_scope(resource_type: str, access: Access) -> Callable[[Principal], Principal]:
    """A dependency that also checks one scope, for routes about a single resource type."""

    def _check(principal: PrincipalDep) -> Principal:
        principal.require(resource_type, access)
        return principal

    return _check
