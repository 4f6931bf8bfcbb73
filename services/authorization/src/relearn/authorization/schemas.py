"""Bodies of the authorization server's answers (for the OpenAPI document; the routes answer JSON)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OAuthErrorBody(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str | None = None


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None
    patient: str | None = None
    encounter: str | None = None


class IntrospectionResponse(BaseModel):
    """RFC 7662 §2.2 (with the SMART context claims)."""

    active: bool
    scope: str | None = None
    client_id: str | None = None
    sub: str | None = None
    exp: int | None = None
    iat: int | None = None
    iss: str | None = None
    aud: Any = None
    token_type: str | None = None
    patient: str | None = None
    device: str | None = None
    fhirUser: str | None = None


class LaunchResponse(BaseModel):
    launch: str
    expires_in: int


class SmartConfiguration(BaseModel):
    issuer: str
    jwks_uri: str
    authorization_endpoint: str
    token_endpoint: str
    introspection_endpoint: str
    revocation_endpoint: str
    grant_types_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    token_endpoint_auth_signing_alg_values_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    code_challenge_methods_supported: list[str]
    scopes_supported: list[str]
    capabilities: list[str]


def oauth_error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the OAuth error answers of a route."""
    what = {
        400: "invalid_request, invalid_grant, invalid_scope, unsupported_grant_type, unauthorized_client",
        401: "invalid_client: the client could not be authenticated",
        403: "the client may not do this",
    }
    return {code: {"model": OAuthErrorBody, "description": what[code]} for code in codes}
