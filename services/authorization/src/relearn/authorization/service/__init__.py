"""The authorization server's use cases: client authentication, the token grants, introspection,
revocation, EHR launch contexts, the authorization request and its approval, the client directory.

Every refusal is an :class:`OAuthError` (the API renders RFC 6749 §5.2 JSON) or, during an authorization
request, an :class:`AuthorizeError` that is sent back to the app's redirect URI when that URI is known good.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlmodel import Session

from relearn.authorization import repository
from relearn.authorization.config import Settings
from relearn.authorization.domain import assertion, pkce
from relearn.authorization.domain import scopes as scope_rules
from relearn.authorization.domain.directory import (
    FHIR_ID,
    ClientDirectory,
    User,
    UserDirectory,
    check_secret,
)
from relearn.authorization.domain.errors import OAuthError, invalid_client, invalid_grant, invalid_request
from relearn.authorization.service.jwks import JwksFetcher
from relearn.authorization.service.keys import SigningKeys
from relearn.authorization.tables import AuthorizationCode, LaunchContext, OAuthClient, RefreshToken

__all__ = [
    "Authorization",
    "AuthorizeError",
    "AuthorizeRequest",
    "ClientCredentials",
    "OAuthError",
]

MAX_PARAM_CHARS = 2048


class AuthorizeError(OAuthError):
    """An authorization request refused; ``redirect_uri`` set when the error may go back to the app."""

    def __init__(
        self, error: str, description: str, *, redirect_uri: str | None = None, state: str | None = None
    ) -> None:
        super().__init__(error, description, 400)
        self.redirect_uri = redirect_uri
        self.state = state

    def location(self) -> str | None:
        if self.redirect_uri is None:
            return None
        params = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            params["state"] = self.state
        return _with_query(self.redirect_uri, params)


@dataclass(frozen=True)
class ClientCredentials:
    """How a request authenticates its client (from the form and the Authorization header)."""

    client_id: str | None = None
    client_secret: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None


@dataclass
class AuthorizeRequest:
    """A validated authorization request (what the login and consent page shows and posts back)."""

    client: OAuthClient
    redirect_uri: str
    state: str
    requested: list[str]
    granted: list[str]
    code_challenge: str
    nonce: str | None = None
    launch: LaunchContext | None = None
    params: dict[str, str] = field(default_factory=dict)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _with_query(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


def _param(params: dict[str, str], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise invalid_request(f"{name} is required")
        return None
    if len(value) > MAX_PARAM_CHARS:
        raise invalid_request(f"{name} is longer than {MAX_PARAM_CHARS} characters")
    return value


class Authorization:
    def __init__(
        self,
        settings: Settings,
        keys: SigningKeys,
        fetcher: JwksFetcher,
        users: UserDirectory,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.fetcher = fetcher
        self.users = users
        self._clock = clock

    # --- the directory ------------------------------------------------------------------------------

    def load_clients(self, session: Session, directory: ClientDirectory) -> int:
        """Register (or update) every client of the directory file; ``active: false`` revokes one, and so
        does leaving it out of the file."""
        for entry in directory.clients:
            existing = repository.get_client(session, entry.client_id)
            was_active = existing.active if existing is not None else True
            row = OAuthClient(
                client_id=entry.client_id,
                name=entry.name,
                auth_method=entry.auth_method,
                jwks=json.dumps(entry.jwks) if entry.jwks is not None else None,
                jwks_uri=entry.jwks_uri,
                secret_hash=entry.secret_hash(),
                scope=entry.scope,
                grant_types=" ".join(entry.effective_grant_types()),
                redirect_uris=json.dumps(entry.redirect_uris),
                devices=json.dumps(entry.devices),
                device_client=entry.device_client,
                launch_issuer=entry.launch_issuer,
                may_introspect=entry.introspection,
                active=entry.active,
                revoked_at=existing.revoked_at if existing is not None and not entry.active else None,
                updated_at=datetime.now(UTC),
            )
            if was_active and not entry.active:
                row.revoked_at = datetime.now(UTC)
                repository.revoke_client_refresh_tokens(session, entry.client_id)
            repository.save_client(session, row)
        # A client no longer in the file is revoked (the file is the source of truth).
        listed = {entry.client_id for entry in directory.clients}
        for client in repository.all_clients(session):
            if client.client_id not in listed and client.active:
                self.set_client_active(session, client.client_id, False)
        return len(directory.clients)

    def set_client_active(self, session: Session, client_id: str, active: bool) -> OAuthClient:
        """Revoke (or reinstate) a client: no token is issued to it any more, introspection says its tokens
        are inactive at once, and its refresh tokens are revoked; access tokens already out expire within
        their lifetime (at most 300 s)."""
        client = repository.get_client(session, client_id)
        if client is None:
            raise invalid_request(f"no client {client_id!r}")
        client.active = active
        client.revoked_at = None if active else datetime.now(UTC)
        client.updated_at = datetime.now(UTC)
        if not active:
            repository.revoke_client_refresh_tokens(session, client_id)
        return repository.save_client(session, client)

    def purge(self, session: Session) -> None:
        repository.purge_expired(session, datetime.now(UTC) - timedelta(seconds=self.settings.clock_skew_s))

    # --- discovery ------------------------------------------------------------------------------------

    def smart_configuration(self, scopes_supported: list[str]) -> dict[str, Any]:
        issuer = self.settings.issuer.rstrip("/")
        methods = ["private_key_jwt", "none"]
        if self.settings.secrets_allowed():
            methods += ["client_secret_basic", "client_secret_post"]
        capabilities = [
            "launch-ehr",
            "launch-standalone",
            "client-public",
            "client-confidential-asymmetric",
            "context-ehr-patient",
            "context-ehr-encounter",
            "context-standalone-patient",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "sso-openid-connect",
            "authorize-post",
        ]
        if self.settings.secrets_allowed():
            capabilities.append("client-confidential-symmetric")
        return {
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks.json",
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": self.settings.token_url,
            "introspection_endpoint": f"{issuer}/introspect",
            "revocation_endpoint": f"{issuer}/revoke",
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": list(assertion.ALGORITHMS),
            "id_token_signing_alg_values_supported": [self.keys.algorithm],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": scopes_supported,
            "capabilities": capabilities,
        }

    def scopes_supported(self, session: Session) -> list[str]:
        base = ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access"]
        registered = {s for c in repository.all_clients(session) if c.active for s in c.scope.split()}
        return sorted(set(base) | registered)

    # --- client authentication -------------------------------------------------------------------------

    def authenticate(
        self, session: Session, creds: ClientCredentials, *, allow_public: bool = False
    ) -> OAuthClient:
        """The calling client, or ``invalid_client`` (401) for any failure."""
        if creds.assertion is not None or creds.assertion_type is not None:
            if creds.client_secret is not None:
                raise invalid_request("give one client authentication method, not several")
            return self._by_assertion(session, creds)
        if creds.client_secret is not None:
            if not self.settings.secrets_allowed():
                raise invalid_client(
                    "client secrets are not accepted here: authenticate with private_key_jwt"
                )
            client = repository.get_client(session, creds.client_id or "")
            if not check_secret(creds.client_secret, client.secret_hash if client else None):
                raise invalid_client()
            assert client is not None
            return self._usable(client)
        if allow_public and creds.client_id:
            client = repository.get_client(session, creds.client_id)
            if client is None or client.auth_method != "none":
                raise invalid_client()
            return self._usable(client)
        raise invalid_client("client authentication is required (private_key_jwt)")

    @staticmethod
    def _usable(client: OAuthClient) -> OAuthClient:
        if not client.active:
            raise invalid_client("the client is revoked")
        return client

    def client_keys(self, client: OAuthClient, kid: str | None = None) -> list[dict[str, Any]]:
        if client.jwks is not None:
            keys = json.loads(client.jwks).get("keys", [])
            return [k for k in keys if isinstance(k, dict)]
        if client.jwks_uri is not None:
            return self.fetcher.keys(client.jwks_uri, want_kid=kid)
        return []

    def _by_assertion(self, session: Session, creds: ClientCredentials) -> OAuthClient:
        if creds.assertion_type != assertion.ASSERTION_TYPE:
            raise invalid_client(f"client_assertion_type must be {assertion.ASSERTION_TYPE}")
        unverified = assertion.peek(creds.assertion or "", creds.client_id)
        client = repository.get_client(session, unverified.client_id)
        if client is None or client.auth_method != "private_key_jwt":
            raise invalid_client()
        self._usable(client)
        now = self._clock()
        verified = assertion.verify_assertion(
            unverified,
            self.client_keys(client, unverified.kid),
            token_url=self.settings.token_url,
            now=now,
            max_lifetime_s=self.settings.max_assertion_lifetime_s,
            skew_s=self.settings.clock_skew_s,
        )
        expires = datetime.fromtimestamp(verified.exp + self.settings.clock_skew_s, UTC)
        if not repository.record_jti(session, client.client_id, verified.jti, expires):
            raise invalid_client("client_assertion: this jti was used before (replay)")
        return client

    # --- the token endpoint ----------------------------------------------------------------------------

    def token(self, session: Session, creds: ClientCredentials, form: dict[str, str]) -> dict[str, Any]:
        grant_type = _param(form, "grant_type", required=True)
        if grant_type == "client_credentials":
            client = self.authenticate(session, creds)
            # Secrets exist only in development: those tokens may live as long as the development issuer's.
            ttl = self.settings.dev_secret_token_ttl_s if creds.client_secret is not None else None
            return self._client_credentials(session, client, form, ttl)
        if grant_type == "authorization_code":
            return self._authorization_code(
                session, self.authenticate(session, creds, allow_public=True), form
            )
        if grant_type == "refresh_token":
            return self._refresh(session, self.authenticate(session, creds, allow_public=True), form)
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")

    def _requested(self, form: dict[str, str]) -> list[str]:
        try:
            return scope_rules.split(form.get("scope", ""))
        except ValueError as exc:
            raise OAuthError("invalid_scope", str(exc)) from None

    def _client_credentials(
        self, session: Session, client: OAuthClient, form: dict[str, str], ttl_s: int | None
    ) -> dict[str, Any]:
        if "client_credentials" not in client.grant_types.split():
            raise OAuthError("unauthorized_client", "this client may not use client_credentials")
        requested = self._requested(form)
        if not requested:
            raise OAuthError("invalid_scope", "the scope parameter is required")
        granted = scope_rules.grant(requested, client.scope.split())
        if not granted:
            raise OAuthError("invalid_scope", "none of the requested scopes is allowed for this client")
        patient = _param(form, "patient")
        if patient is not None:
            if not self.settings.secrets_allowed():
                raise invalid_request("'patient' is a development parameter of client_credentials")
            if not FHIR_ID.match(patient):
                raise invalid_request("'patient' must be a FHIR resource id")
        elif scope_rules.has_context(granted, "patient"):
            raise invalid_request("patient/ scopes need a patient in context (use App Launch)")
        device = self._device(client, _param(form, "device"))
        ttl = ttl_s or self.settings.access_token_ttl_s
        claims = self._access_claims(
            client.client_id, client.client_id, granted, patient=patient, device=device, ttl_s=ttl
        )
        return {
            "access_token": self.keys.sign(claims, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": " ".join(granted),
        }

    @staticmethod
    def _device(client: OAuthClient, requested: str | None) -> str | None:
        devices: list[str] = json.loads(client.devices)
        if not client.device_client:
            if requested is not None:
                raise invalid_request("this client is not a device client: no 'device' parameter")
            return None
        if requested is None:
            if len(devices) == 1:
                return devices[0]
            raise invalid_request("a device client with several devices gives 'device' (a registered id)")
        if requested not in devices:
            raise invalid_request(f"device {requested!r} is not bound to this client")
        return requested

    def _access_claims(
        self,
        subject: str,
        client_id: str,
        granted: list[str],
        *,
        patient: str | None = None,
        device: str | None = None,
        fhir_user: str | None = None,
        ttl_s: int | None = None,
    ) -> dict[str, Any]:
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer.rstrip("/"),
            "aud": [self.settings.auth_audience, self.settings.fhir_base_url.rstrip("/")],
            "sub": subject,
            "client_id": client_id,
            "scope": " ".join(granted),
            "iat": now,
            "nbf": now,
            "exp": now + (ttl_s or self.settings.access_token_ttl_s),
            "jti": uuid.uuid4().hex,
        }
        if patient is not None:
            claims["patient"] = patient
        if device is not None:
            claims["device"] = device
        if fhir_user is not None:
            claims["fhirUser"] = self._fhir_user_url(fhir_user)
        return claims

    def _fhir_user_url(self, fhir_user: str) -> str:
        return f"{self.settings.fhir_base_url.rstrip('/')}/{fhir_user}"

    # --- introspection and revocation -------------------------------------------------------------------

    def introspect(self, session: Session, caller: OAuthClient, token: str) -> dict[str, Any]:
        """RFC 7662: what a token is, if it is active; ``{"active": false}`` for anything else."""
        inactive: dict[str, Any] = {"active": False}
        claims = self.keys.verify(token)
        now = self._clock()
        if claims is not None:
            client_id = claims.get("client_id")
            if not caller.may_introspect and client_id != caller.client_id:
                return inactive
            exp = claims.get("exp")
            if (
                not isinstance(exp, int | float)
                or exp <= now
                or claims.get("iss") != self.settings.issuer.rstrip("/")
            ):
                return inactive
            if repository.is_revoked(session, str(claims.get("jti", ""))):
                return inactive
            owner = repository.get_client(session, str(client_id))
            if owner is None or not owner.active:
                return inactive
            out = {"active": True, "token_type": "Bearer"}
            for name in ("scope", "client_id", "sub", "exp", "iat", "nbf", "iss", "aud", "jti"):
                if name in claims:
                    out[name] = claims[name]
            for name in ("patient", "device", "fhirUser"):
                if name in claims:
                    out[name] = claims[name]
            return out
        refresh = repository.take_refresh(session, _hash(token)) if len(token) <= 256 else None
        if (
            refresh is None
            or refresh.used
            or refresh.revoked
            or _aware(refresh.expires_at).timestamp() <= now
        ):
            return inactive
        if not caller.may_introspect and refresh.client_id != caller.client_id:
            return inactive
        owner = repository.get_client(session, refresh.client_id)
        if owner is None or not owner.active:
            return inactive
        out = {
            "active": True,
            "token_type": "refresh_token",
            "scope": refresh.scope,
            "client_id": refresh.client_id,
            "sub": refresh.username,
            "exp": int(_aware(refresh.expires_at).timestamp()),
        }
        if refresh.patient:
            out["patient"] = refresh.patient
        return out

    def revoke(self, session: Session, caller: OAuthClient, token: str) -> None:
        """RFC 7009: revoke one of the caller's tokens (an unknown or foreign token is ignored: 200)."""
        claims = self.keys.verify(token)
        if claims is not None:
            if claims.get("client_id") != caller.client_id:
                return
            exp = claims.get("exp")
            if isinstance(exp, int | float) and isinstance(claims.get("jti"), str):
                expires = datetime.fromtimestamp(exp + self.settings.clock_skew_s, UTC)
                repository.revoke_access_token(session, claims["jti"], caller.client_id, expires)
            return
        if len(token) > 256:
            return
        refresh = repository.take_refresh(session, _hash(token))
        if refresh is not None and refresh.client_id == caller.client_id:
            repository.revoke_refresh_family(session, refresh.family)

    # --- EHR launch ------------------------------------------------------------------------------------

    def create_launch(
        self, session: Session, caller: OAuthClient, patient: str | None, encounter: str | None
    ) -> dict[str, Any]:
        """An EHR registers the context of a launch and gets the opaque ``launch`` value to pass the app."""
        if not caller.launch_issuer:
            raise OAuthError("unauthorized_client", "this client may not create launch contexts", 403)
        for name, value in (("patient", patient), ("encounter", encounter)):
            if value is not None and not FHIR_ID.match(value):
                raise invalid_request(f"'{name}' must be a FHIR resource id")
        launch_id = secrets.token_urlsafe(24)
        expires = datetime.now(UTC) + timedelta(seconds=self.settings.launch_ttl_s)
        repository.add_launch(
            session,
            LaunchContext(
                launch_id=launch_id,
                issued_by=caller.client_id,
                patient=patient,
                encounter=encounter,
                expires_at=expires,
            ),
        )
        return {"launch": launch_id, "expires_in": self.settings.launch_ttl_s}

    # --- the authorization request ---------------------------------------------------------------------

    def authorize_request(self, session: Session, params: dict[str, str]) -> AuthorizeRequest:
        """Validate an authorization request. Errors about the client or its redirect URI are shown to the
        user (never redirected); later ones go back to the app with its ``state``."""
        client_id = _param(params, "client_id")
        client = repository.get_client(session, client_id) if client_id else None
        if client is None or not client.active:
            raise AuthorizeError("invalid_request", "unknown or revoked client_id")
        registered: list[str] = json.loads(client.redirect_uris)
        redirect_uri = params.get("redirect_uri")  # required by SMART, compared exactly
        if not redirect_uri or redirect_uri not in registered:
            raise AuthorizeError("invalid_request", "redirect_uri is not registered for this client")
        state = params.get("state")

        def fail(error: str, description: str) -> AuthorizeError:
            return AuthorizeError(error, description, redirect_uri=redirect_uri, state=state)

        if not state or len(state) > MAX_PARAM_CHARS:
            raise fail("invalid_request", "state is required (at most 2048 characters)")
        if params.get("response_type") != "code":
            raise fail("unsupported_response_type", "response_type must be code")
        if "authorization_code" not in client.grant_types.split():
            raise fail("unauthorized_client", "this client may not use the authorization code grant")
        aud = params.get("aud", "")
        if aud.rstrip("/") != self.settings.fhir_base_url.rstrip("/"):
            raise fail(
                "invalid_request", f"aud must be this server's FHIR base URL {self.settings.fhir_base_url}"
            )
        why = pkce.valid_challenge(params.get("code_challenge"), params.get("code_challenge_method"))
        if why is not None:
            raise fail("invalid_request", why)
        try:
            requested = scope_rules.split(params.get("scope", ""))
        except ValueError as exc:
            raise fail("invalid_scope", str(exc)) from None
        granted = scope_rules.grant(requested, client.scope.split())
        if not granted:
            raise fail("invalid_scope", "none of the requested scopes is allowed for this client")
        launch: LaunchContext | None = None
        launch_id = params.get("launch")
        if launch_id:
            launch = repository.get_launch(session, launch_id) if len(launch_id) <= 64 else None
            if launch is None or _aware(launch.expires_at) <= datetime.now(UTC):
                raise fail("invalid_request", "unknown or expired launch")
        nonce = params.get("nonce")
        if nonce is not None and len(nonce) > 255:
            raise fail("invalid_request", "nonce is longer than 255 characters")
        kept = {k: v for k, v in params.items() if k in _AUTHORIZE_PARAMS}
        return AuthorizeRequest(
            client,
            redirect_uri,
            state,
            requested,
            granted,
            str(params["code_challenge"]),
            nonce,
            launch,
            kept,
        )

    def approve(
        self,
        session: Session,
        request: AuthorizeRequest,
        user: User,
        *,
        approved: bool,
        patient_choice: str | None = None,
    ) -> str:
        """The redirect back to the app after login and consent: a code, or ``access_denied``."""
        if not approved:
            return (
                AuthorizeError(
                    "access_denied",
                    "the user declined",
                    redirect_uri=request.redirect_uri,
                    state=request.state,
                ).location()
                or request.redirect_uri
            )
        granted = list(request.granted)
        patient = request.launch.patient if request.launch else None
        encounter = request.launch.encounter if request.launch else None
        if patient is None and "launch/patient" in granted:
            patient = user.patient or patient_choice
        if user.patient is not None and patient is not None and patient != user.patient:
            patient = user.patient  # a patient user only ever gets their own record
        if patient is not None and not FHIR_ID.match(patient):
            raise AuthorizeError("invalid_request", "the patient chosen is not a FHIR resource id")
        if scope_rules.has_context(granted, "patient") and patient is None:
            raise AuthorizeError(
                "invalid_scope",
                "patient/ scopes need a patient in context (launch/patient or an EHR launch)",
                redirect_uri=request.redirect_uri,
                state=request.state,
            )
        code = secrets.token_urlsafe(32)
        repository.add_code(
            session,
            AuthorizationCode(
                code_hash=_hash(code),
                client_id=request.client.client_id,
                redirect_uri=request.redirect_uri,
                scope=" ".join(granted),
                code_challenge=request.code_challenge,
                username=user.username,
                fhir_user=user.fhir_user,
                patient=patient,
                encounter=encounter,
                nonce=request.nonce,
                expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.authorization_code_ttl_s),
            ),
        )
        return _with_query(request.redirect_uri, {"code": code, "state": request.state})

    def _authorization_code(
        self, session: Session, client: OAuthClient, form: dict[str, str]
    ) -> dict[str, Any]:
        code_value = _param(form, "code", required=True)
        assert code_value is not None
        code = repository.take_code(session, _hash(code_value))
        if code is None or code.client_id != client.client_id:
            raise invalid_grant("unknown authorization code")
        if code.used:
            raise invalid_grant("the authorization code was used before")
        repository.mark_code_used(session, code)
        if _aware(code.expires_at) <= datetime.now(UTC):
            raise invalid_grant("the authorization code has expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise invalid_grant("redirect_uri differs from the authorization request's")
        if not pkce.verifier_matches(form.get("code_verifier"), code.code_challenge):
            raise invalid_grant("code_verifier does not match the code_challenge")
        return self._user_tokens(
            session,
            client,
            code.scope.split(),
            username=code.username,
            fhir_user=code.fhir_user,
            patient=code.patient,
            encounter=code.encounter,
            nonce=code.nonce,
            family=None,
        )

    def _refresh(self, session: Session, client: OAuthClient, form: dict[str, str]) -> dict[str, Any]:
        value = _param(form, "refresh_token", required=True)
        assert value is not None
        token = repository.take_refresh(session, _hash(value)) if len(value) <= 256 else None
        if token is None or token.client_id != client.client_id or token.revoked:
            raise invalid_grant("unknown or revoked refresh token")
        if token.used:  # presented twice: one of the holders is not the app
            repository.revoke_refresh_family(session, token.family)
            raise invalid_grant("the refresh token was used before; its family is revoked")
        if _aware(token.expires_at) <= datetime.now(UTC):
            raise invalid_grant("the refresh token has expired")
        repository.mark_refresh_used(session, token)
        held = token.scope.split()
        requested = self._requested(form)
        granted = [s for s in requested if s in held] if requested else held
        if requested and not granted:
            raise OAuthError("invalid_scope", "a refresh may only narrow the scopes granted")
        if not {"offline_access", "online_access"} & set(granted):
            granted = [*granted, *(s for s in held if s in ("offline_access", "online_access"))]
        return self._user_tokens(
            session,
            client,
            granted,
            username=token.username,
            fhir_user=token.fhir_user,
            patient=token.patient,
            encounter=token.encounter,
            nonce=None,
            family=token.family,
            id_token=False,
        )

    def _user_tokens(
        self,
        session: Session,
        client: OAuthClient,
        granted: list[str],
        *,
        username: str,
        fhir_user: str | None,
        patient: str | None,
        encounter: str | None,
        nonce: str | None,
        family: str | None,
        id_token: bool = True,
    ) -> dict[str, Any]:
        with_user = fhir_user if "fhirUser" in granted else None
        subject = fhir_user or username
        claims = self._access_claims(subject, client.client_id, granted, patient=patient, fhir_user=with_user)
        answer: dict[str, Any] = {
            "access_token": self.keys.sign(claims, typ="at+jwt"),
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "scope": " ".join(granted),
        }
        if patient is not None:
            answer["patient"] = patient
        if encounter is not None:
            answer["encounter"] = encounter
        if id_token and "openid" in granted and fhir_user is not None and "fhirUser" in granted:
            now = int(self._clock())
            id_claims: dict[str, Any] = {
                "iss": self.settings.issuer.rstrip("/"),
                "sub": subject,
                "aud": client.client_id,
                "iat": now,
                "exp": now + self.settings.access_token_ttl_s,
                "fhirUser": self._fhir_user_url(fhir_user),
            }
            if nonce is not None:
                id_claims["nonce"] = nonce
            answer["id_token"] = self.keys.sign(id_claims)
        offline = "offline_access" in granted
        if offline or "online_access" in granted:
            ttl = self.settings.refresh_token_ttl_s if offline else self.settings.online_refresh_token_ttl_s
            refresh = secrets.token_urlsafe(32)
            repository.add_refresh(
                session,
                RefreshToken(
                    token_hash=_hash(refresh),
                    family=family or uuid.uuid4().hex,
                    client_id=client.client_id,
                    scope=" ".join(granted),
                    username=username,
                    fhir_user=fhir_user,
                    patient=patient,
                    encounter=encounter,
                    expires_at=datetime.now(UTC) + timedelta(seconds=ttl),
                ),
            )
            answer["refresh_token"] = refresh
        return answer


_AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "launch",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)
