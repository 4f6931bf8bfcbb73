"""Every table of the authorization database (imported by the migrations' env.py).

Secrets never stand in the clear: client secrets, authorization codes and refresh tokens are kept as
hashes (SHA-256 of a 256-bit random value for codes and refresh tokens, PBKDF2 for client secrets).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)


def _now() -> datetime:
    return datetime.now(UTC)


class OAuthClient(SQLModel, table=True):
    """A registered client: a Backend Services client (EHR back end, device hub) or an App Launch app."""

    __tablename__ = "oauth_client"

    client_id: str = Field(primary_key=True, max_length=128)
    name: str = Field(default="", max_length=255)
    # private_key_jwt | client_secret_basic | none (a public browser app: PKCE only)
    auth_method: str = Field(max_length=32)
    jwks: str | None = Field(default=None, sa_type=sa.Text)  # inline public JWKS (JSON)
    jwks_uri: str | None = Field(default=None, sa_type=sa.Text)
    secret_hash: str | None = Field(default=None, max_length=255)  # development only
    scope: str = Field(default="", sa_type=sa.Text)  # the scopes it may be granted (space-separated)
    grant_types: str = Field(default="client_credentials", max_length=255)  # space-separated
    redirect_uris: str = Field(default="[]", sa_type=sa.Text)  # JSON list
    devices: str = Field(default="[]", sa_type=sa.Text)  # JSON list of Device ids (device clients)
    device_client: bool = False
    # May create EHR launch contexts (POST /auth/launch).
    launch_issuer: bool = False
    # May introspect any client's tokens (a resource server); others introspect only their own.
    may_introspect: bool = False
    active: bool = True
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=_now, sa_type=sa.DateTime(timezone=True))


class AssertionJti(SQLModel, table=True):
    """Client assertion ids seen until their expiry: the replay store (the primary key is the guard, so two
    replicas cannot both accept the same assertion)."""

    __tablename__ = "assertion_jti"

    client_id: str = Field(primary_key=True, max_length=128)
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)


class RevokedToken(SQLModel, table=True):
    """Access tokens revoked before their expiry (RFC 7009), by `jti`; kept until they would have expired."""

    __tablename__ = "revoked_token"

    jti: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=128)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)


class AuthorizationCode(SQLModel, table=True):
    """A code of the authorization-code grant, single use, bound to its client, redirect URI and PKCE."""

    __tablename__ = "authorization_code"

    code_hash: str = Field(primary_key=True, max_length=64)
    client_id: str = Field(max_length=128)
    redirect_uri: str = Field(sa_type=sa.Text)
    scope: str = Field(sa_type=sa.Text)
    code_challenge: str = Field(max_length=128)
    username: str = Field(max_length=128)
    fhir_user: str | None = Field(default=None, max_length=255)
    patient: str | None = Field(default=None, max_length=64)
    encounter: str | None = Field(default=None, max_length=64)
    nonce: str | None = Field(default=None, max_length=255)
    used: bool = False
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)


class RefreshToken(SQLModel, table=True):
    """A refresh token (hashed). Rotating: each use replaces it by a new one of the same family; a used one
    presented again revokes the whole family (it was stolen, or the new one was)."""

    __tablename__ = "refresh_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    family: str = Field(max_length=64, index=True)
    client_id: str = Field(max_length=128, index=True)
    scope: str = Field(sa_type=sa.Text)
    username: str = Field(max_length=128)
    fhir_user: str | None = Field(default=None, max_length=255)
    patient: str | None = Field(default=None, max_length=64)
    encounter: str | None = Field(default=None, max_length=64)
    used: bool = False
    revoked: bool = False
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
    created_at: datetime = Field(default_factory=_now, sa_type=sa.DateTime(timezone=True))


class LaunchContext(SQLModel, table=True):
    """An EHR launch: the context an EHR registered (POST /auth/launch) under an opaque `launch` id."""

    __tablename__ = "launch_context"

    launch_id: str = Field(primary_key=True, max_length=64)
    issued_by: str = Field(max_length=128)
    patient: str | None = Field(default=None, max_length=64)
    encounter: str | None = Field(default=None, max_length=64)
    expires_at: datetime = Field(sa_type=sa.DateTime(timezone=True), index=True)
