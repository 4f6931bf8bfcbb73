"""A development token issuer for the local run: OAuth2 client credentials with SMART scopes.

Not an authorization server for production (no user login, no SMART app launch, no
``private_key_jwt``): it lets ``make run``, the token CLI and tests obtain real signed tokens
that services verify exactly as they would verify a production issuer's.

- :class:`ClientRegistry` — registered clients (secret, allowed SMART scope patterns), from JSON.
- :class:`DevIssuer` — owns a signing key in ``key_dir`` (created on first use), publishes the
  public JWKS to ``key_dir/jwks.json`` (what services read as ``auth_jwks``) and mints tokens.
- :func:`dev_token_router` — ``POST /auth/token``, ``GET /auth/jwks.json`` and
  ``GET /.well-known/smart-configuration``, for the front door to mount.

Its own workspace member (``tools/dev-issuer``), installed only where it runs: the workspace environment
(``make run``, tests, devtools) and the front door's ``dev-issuer`` extra (the compose ``dev`` profile's
container, the dev Kubernetes overlay). No service image contains it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from starlette.concurrency import run_in_threadpool

from relearn.shared.auth import Scope, is_non_resource_scope, parse_jwks, scope_covers

__all__ = [
    "ClientRegistry",
    "DevIssuer",
    "DevIssuerSettings",
    "IssuedToken",
    "RegisteredClient",
    "TokenRequestError",
    "default_clients_file",
    "dev_token_router",
    "hash_secret",
]

KEY_FILE = "dev-issuer-key.json"
JWKS_FILE = "jwks.json"
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_HASH_SCHEME = "pbkdf2_sha256"
_MAX_FORM_BYTES = 64 * 1024


class TokenRequestError(Exception):
    """A token request refused with an RFC 6749 §5.2 error code."""

    def __init__(self, error: str, description: str, status_code: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status_code = status_code

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _invalid_client() -> TokenRequestError:
    # One message for unknown client and wrong secret: do not reveal which client ids exist.
    return TokenRequestError("invalid_client", "Client authentication failed", 401)


# --- client secrets ---------------------------------------------------------------------------


def hash_secret(secret: str, *, iterations: int = 200_000) -> str:
    """A storable hash of a client secret: ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{_HASH_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def _check_hashed(secret: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != _HASH_SCHEME:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except (ValueError, binascii.Error):
        return False


# --- registered clients -----------------------------------------------------------------------


def _within(requested: Scope, allowed: Scope) -> bool:
    """Whether ``allowed`` (a pattern such as ``system/*.*`` or ``patient/Observation.rs``) covers
    everything ``requested`` grants: its context, type, letters (v1 and v2 alike) and filter (a
    registered filter must be among the requested one's conditions)."""
    return scope_covers(allowed, requested)


@dataclass(frozen=True)
class RegisteredClient:
    """A client allowed to use the client-credentials grant.

    ``allowed_scopes`` are SMART scope patterns a requested scope must fall within
    (``system/*.*`` covers ``system/Observation.read``); ``device_claim`` makes it a device client
    (a clinic hub): every token it gets carries a ``device`` claim, one of the ``devices`` it was
    registered with, so one hub's secret cannot impersonate another hub.
    """

    client_id: str
    allowed_scopes: tuple[str, ...]
    client_secret: str | None = field(default=None, repr=False)
    client_secret_hash: str | None = field(default=None, repr=False)
    device_claim: bool = False
    devices: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if (self.client_secret is None) == (self.client_secret_hash is None):
            raise ValueError(
                f"Client {self.client_id!r}: give exactly one of client_secret, client_secret_hash"
            )
        for pattern in self.allowed_scopes:
            if Scope.parse(pattern) is None and "/" in pattern and not is_non_resource_scope(pattern):
                raise ValueError(f"Client {self.client_id!r}: {pattern!r} is not a SMART scope")
        if self.devices and not self.device_claim:
            raise ValueError(f"Client {self.client_id!r}: 'devices' needs device_claim")
        for device in self.devices:
            if not _FHIR_ID.match(device):
                raise ValueError(f"Client {self.client_id!r}: device {device!r} is not a FHIR id")

    def device_for(self, requested: str | None) -> str | None:
        """The ``device`` claim a token for this client carries, or :class:`TokenRequestError`.

        A device client always gets one, among the devices it was registered with (the only one
        when it has one and none is asked for); other clients never do.
        """
        if not self.device_claim:
            if requested is not None:
                raise TokenRequestError(
                    "invalid_request", f"Client {self.client_id!r} may not carry a 'device' claim"
                )
            return None
        if requested is None:
            if len(self.devices) == 1:
                return self.devices[0]
            raise TokenRequestError(
                "invalid_request",
                f"Client {self.client_id!r} is a device client: give 'device' (a registered device id)",
            )
        if requested not in self.devices:
            raise TokenRequestError(
                "invalid_request",
                f"Device {requested!r} is not registered to client {self.client_id!r}",
            )
        return requested

    def check_secret(self, secret: str) -> bool:
        """Constant-time check of a presented secret."""
        if self.client_secret_hash is not None:
            return _check_hashed(secret, self.client_secret_hash)
        assert self.client_secret is not None
        return hmac.compare_digest(secret.encode(), self.client_secret.encode())

    def grant(self, scope: str, *, patient: str | None = None, device: str | None = None) -> str:
        """The scope to grant for a request, or :class:`TokenRequestError` when it is not allowed."""
        requested = list(dict.fromkeys(scope.split()))
        if not requested:
            raise TokenRequestError("invalid_scope", "The scope parameter is required")
        allowed = [(p, Scope.parse(p)) for p in self.allowed_scopes]
        needs_patient = False
        for text in requested:
            parsed = Scope.parse(text)
            if parsed is None:
                ok = any(p == text for p, _ in allowed)
            else:
                ok = any(a is not None and _within(parsed, a) for _, a in allowed)
                needs_patient = needs_patient or parsed.context == "patient"
            if not ok:
                raise TokenRequestError(
                    "invalid_scope", f"Scope {text!r} is not allowed for client {self.client_id!r}"
                )
        if needs_patient and not patient:
            raise TokenRequestError(
                "invalid_request", "patient/ scopes need a 'patient' parameter (the patient in context)"
            )
        if patient is not None and not _FHIR_ID.match(patient):
            raise TokenRequestError("invalid_request", "'patient' must be a FHIR resource id")
        if device is not None and not _FHIR_ID.match(device):
            raise TokenRequestError("invalid_request", "'device' must be a FHIR resource id")
        self.device_for(device)
        return " ".join(requested)


class ClientRegistry:
    """The registered clients, usually loaded from a JSON file::

        {"clients": [{"client_id": "ehr-demo", "client_secret_hash": "pbkdf2_sha256$...",
                      "scope": "system/*.read", "device_claim": false, "description": "..."},
                     {"client_id": "hub-1", "client_secret": "...", "scope": "system/Observation.write",
                      "device_claim": true, "devices": ["hub-1"]}]}

    A client has ``client_secret`` (a plain development secret) or ``client_secret_hash``
    (from :func:`hash_secret`).
    """

    def __init__(self, clients: Iterable[RegisteredClient]) -> None:
        self._clients: dict[str, RegisteredClient] = {}
        for client in clients:
            if client.client_id in self._clients:
                raise ValueError(f"Client {client.client_id!r} is registered twice")
            self._clients[client.client_id] = client

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> ClientRegistry:
        """Build the registry from the JSON document described in the class docstring."""
        entries = document.get("clients")
        if not isinstance(entries, list):
            raise ValueError("A client registry is an object with a 'clients' array")
        clients = []
        for entry in entries:
            scope = entry.get("scope", "")
            devices = entry.get("devices", [])
            if not isinstance(devices, list):
                raise ValueError(f"Client {entry.get('client_id')!r}: 'devices' is a list of Device ids")
            clients.append(
                RegisteredClient(
                    client_id=str(entry["client_id"]),
                    allowed_scopes=tuple(scope.split() if isinstance(scope, str) else scope),
                    client_secret=entry.get("client_secret"),
                    client_secret_hash=entry.get("client_secret_hash"),
                    device_claim=bool(entry.get("device_claim", False)),
                    devices=tuple(str(d) for d in devices),
                    description=str(entry.get("description", "")),
                )
            )
        return cls(clients)

    @classmethod
    def from_file(cls, path: Path | str) -> ClientRegistry:
        """Load the registry from a JSON file."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def add(self, client: RegisteredClient) -> None:
        """Register one more client (at runtime: tests, an operator's tooling)."""
        if client.client_id in self._clients:
            raise ValueError(f"Client {client.client_id!r} is registered twice")
        self._clients[client.client_id] = client

    def register_device(self, client_id: str, device: str) -> RegisteredClient:
        """Bind one more device id to a device client (what an operator does when installing a hub)."""
        client = self._clients.get(client_id)
        if client is None or not client.device_claim:
            raise ValueError(f"{client_id!r} is not a registered device client")
        if device not in client.devices:
            client = replace(client, devices=(*client.devices, device))
            self._clients[client_id] = client
        return client

    def __iter__(self) -> Iterator[RegisteredClient]:
        return iter(self._clients.values())

    def get(self, client_id: str) -> RegisteredClient | None:
        return self._clients.get(client_id)

    def authenticate(self, client_id: str, client_secret: str) -> RegisteredClient:
        """The client if the secret is right, else ``invalid_client`` (401)."""
        client = self._clients.get(client_id)
        if client is None:
            # Spend comparable effort for unknown ids as for known ones.
            hmac.compare_digest(client_secret.encode(), secrets.token_hex(16).encode())
            raise _invalid_client()
        if not client.check_secret(client_secret):
            raise _invalid_client()
        return client

    def scopes_supported(self) -> list[str]:
        return sorted({s for c in self for s in c.allowed_scopes})


# --- the issuer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def _write_private(path: Path, text: str) -> bool:
    """Create ``path`` (0600) with ``text`` unless it exists; True if this call created it.

    Written to a temporary file then hard-linked into place, so two processes starting at once
    never both create a key nor read a half-written one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _write_public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _public_jwk(key: ECKey | RSAKey) -> dict[str, Any]:
    alg = "ES256" if key.key_type == "EC" else "RS256"
    return {**key.as_dict(private=False), "kid": key.kid, "use": "sig", "alg": alg}


def _load_or_create_key(key_dir: Path, key_type: Literal["EC", "RSA"]) -> ECKey | RSAKey:
    key_dir.mkdir(parents=True, exist_ok=True)
    key_path = key_dir / KEY_FILE
    if not key_path.exists():
        new: ECKey | RSAKey = (
            ECKey.generate_key("P-256", auto_kid=True)
            if key_type == "EC"
            else RSAKey.generate_key(2048, auto_kid=True)
        )
        # If another process won the race, its key is the one we load below.
        _write_private(key_path, json.dumps(new.as_dict(private=True)))
    data = json.loads(key_path.read_text(encoding="utf-8"))
    key: ECKey | RSAKey = RSAKey.import_key(data) if data.get("kty") == "RSA" else ECKey.import_key(data)
    key.ensure_kid()
    if not key.is_private:
        raise ValueError(f"{key_path} does not hold a private key")
    return key


def _write_jwks(key_dir: Path, key: ECKey | RSAKey) -> None:
    public = json.dumps({"keys": [_public_jwk(key)]}, indent=2) + "\n"
    path = key_dir / JWKS_FILE
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current != public:
        _write_public(path, public)


class DevIssuerSettings(Protocol):
    """What :meth:`DevIssuer.from_settings` reads (the front door's settings have these)."""

    @property
    def dev_issuer_url(self) -> str: ...
    @property
    def dev_key_dir(self) -> Path: ...
    @property
    def dev_clients_file(self) -> Path | None: ...
    @property
    def auth_audience(self) -> str: ...


def default_clients_file() -> Path:
    """The client registry shipped for the local run: ``relearn/dev_issuer/dev-clients.json``."""
    return Path(__file__).with_name("dev-clients.json")


class DevIssuer:
    """Signs access tokens for registered clients with a key kept in ``key_dir``.

    The private key (``dev-issuer-key.json``, mode 0600) is generated on first use: EC P-256
    (ES256) by default, RSA 2048 (RS256) with ``key_type="RSA"``. Its public JWKS is written to
    ``key_dir/jwks.json`` for services to verify against.
    """

    def __init__(
        self,
        key_dir: Path,
        issuer: str,
        audience: str,
        clients: ClientRegistry,
        *,
        key_type: Literal["EC", "RSA"] = "EC",
        default_ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key_dir = Path(key_dir)
        self.issuer = issuer
        self.audience = audience
        self.clients = clients
        self.key_type = key_type
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._key: ECKey | RSAKey | None = None

    @property
    def key_path(self) -> Path:
        return self.key_dir / KEY_FILE

    @property
    def jwks_path(self) -> Path:
        return self.key_dir / JWKS_FILE

    @property
    def algorithm(self) -> str:
        return "ES256" if self._signing_key().key_type == "EC" else "RS256"

    def _signing_key(self) -> ECKey | RSAKey:
        with self._lock:
            if self._key is None:
                self._key = _load_or_create_key(self.key_dir, self.key_type)
                _write_jwks(self.key_dir, self._key)
            return self._key

    @classmethod
    def from_settings(cls, settings: DevIssuerSettings) -> DevIssuer:
        """The issuer configured by ``dev_issuer_url``, ``dev_key_dir``, ``dev_clients_file`` (default:
        :func:`default_clients_file`) and ``auth_audience``."""
        clients_file = settings.dev_clients_file or default_clients_file()
        return cls(
            settings.dev_key_dir,
            settings.dev_issuer_url,
            settings.auth_audience,
            ClientRegistry.from_file(clients_file),
        )

    @staticmethod
    def ensure_keys(key_dir: Path, *, key_type: Literal["EC", "RSA"] = "EC") -> Path:
        """Create the signing key in ``key_dir`` if missing and publish ``jwks.json``; returns its path.

        For launchers (``make run``) that must hand services their ``auth_jwks`` before the
        issuer itself runs; the issuer then uses the same key.
        """
        _write_jwks(Path(key_dir), _load_or_create_key(Path(key_dir), key_type))
        return Path(key_dir) / JWKS_FILE

    def publish(self) -> Path:
        """Create the key if needed and (re)write ``jwks.json``; returns its path.

        Call it at startup so services can load the keys before the first token is minted.
        """
        key = self._signing_key()
        with self._lock:
            _write_jwks(self.key_dir, key)
        return self.jwks_path

    def public_jwks(self) -> dict[str, Any]:
        """The public JSON Web Key Set (what ``jwks.json`` holds); creates the key if needed."""
        return {"keys": [_public_jwk(self._signing_key())]}

    def public_key_set(self) -> KeySet:
        """The public keys as a joserfc KeySet, e.g. for a :class:`JwtVerifier` in tests."""
        return parse_jwks(self.public_jwks(), origin="the development issuer")

    def issue(
        self,
        client_id: str,
        scope: str,
        *,
        patient: str | None = None,
        device: str | None = None,
        ttl_s: int | None = None,
    ) -> IssuedToken:
        """Mint a token for a registered client, within its allowed scopes (no secret check)."""
        client = self.clients.get(client_id)
        if client is None:
            raise _invalid_client()
        granted = client.grant(scope, patient=patient, device=device)
        device = client.device_for(device)
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": client_id,
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "scope": granted,
        }
        if patient is not None:
            claims["patient"] = patient
        if device is not None:
            claims["device"] = device
        key = self._signing_key()
        alg = "ES256" if key.key_type == "EC" else "RS256"
        # RFC 9068 access-token type; verifiers do not depend on it.
        header = {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
        return IssuedToken(jwt.encode(header, claims, key, algorithms=[alg]), ttl, granted)

    def mint(
        self,
        client_id: str,
        scope: str,
        *,
        patient: str | None = None,
        device: str | None = None,
        ttl_s: int = 3600,
    ) -> str:
        """A signed access token for ``client_id`` (see :meth:`issue`)."""
        return self.issue(client_id, scope, patient=patient, device=device, ttl_s=ttl_s).access_token

    def token_for_client(
        self,
        client_id: str,
        client_secret: str,
        scope: str,
        *,
        patient: str | None = None,
        device: str | None = None,
    ) -> IssuedToken:
        """The client-credentials grant: authenticate the client, then :meth:`issue`."""
        self.clients.authenticate(client_id, client_secret)
        return self.issue(client_id, scope, patient=patient, device=device)


# --- HTTP -------------------------------------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_TOKEN_FORM_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type", "scope"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "client_id": {"type": "string", "description": "or use HTTP Basic"},
                        "client_secret": {"type": "string", "description": "or use HTTP Basic"},
                        "scope": {"type": "string", "example": "system/Observation.read"},
                        "patient": {"type": "string", "description": "patient in context (patient/ scopes)"},
                        "device": {"type": "string", "description": "device id (device gateways)"},
                    },
                }
            }
        },
    }
}


def _error_response(exc: TokenRequestError) -> JSONResponse:
    headers = dict(_NO_STORE)
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="relearn"'
    return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise TokenRequestError("invalid_request", "The body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise TokenRequestError("invalid_request", "The request body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise TokenRequestError("invalid_request", "The body is not a valid form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.2: parameters must not repeat
            raise TokenRequestError("invalid_request", f"Parameter {name!r} is given more than once")
        form[name] = value
    return form


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """client_secret_basic or client_secret_post (one of them, RFC 6749 §2.3.1)."""
    authorization = request.headers.get("authorization")
    in_form = "client_secret" in form
    if authorization is not None:
        if in_form:
            raise TokenRequestError(
                "invalid_request", "Use HTTP Basic or client_secret in the body, not both"
            )
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise _invalid_client()
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _invalid_client() from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise _invalid_client()
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if form.get("client_id", client_id) != client_id:
            raise TokenRequestError("invalid_request", "client_id differs from the HTTP Basic user")
        return client_id, secret
    if not form.get("client_id") or not in_form:
        raise _invalid_client()
    return form["client_id"], form["client_secret"]


# RFC 6749 section 5.2: the token endpoint's errors are JSON objects, not OperationOutcomes.
_OAUTH_ERROR: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
            }
        }
    }
}


def dev_token_router(issuer: DevIssuer) -> APIRouter:
    """Routes of the development issuer: token endpoint, JWKS and SMART configuration."""
    router = APIRouter(tags=["auth (development)"])

    @router.post(
        "/auth/token",
        name="dev_token",
        summary="OAuth2 client-credentials grant (development issuer)",
        openapi_extra=_TOKEN_FORM_SCHEMA,
        responses={
            400: {"description": "invalid_request, unsupported_grant_type or invalid_scope", **_OAUTH_ERROR},
            401: {"description": "invalid_client: the client's credentials were refused", **_OAUTH_ERROR},
        },
    )
    async def token(request: Request) -> JSONResponse:
        try:
            form = await _read_form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise TokenRequestError("invalid_request", "grant_type is required")
            if grant_type != "client_credentials":
                raise TokenRequestError(
                    "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
                )
            client_id, secret = _client_credentials(request, form)
            # Off the event loop: hashing secrets and signing take CPU.
            issued = await run_in_threadpool(
                issuer.token_for_client,
                client_id,
                secret,
                form.get("scope", ""),
                patient=form.get("patient") or None,
                device=form.get("device") or None,
            )
        except TokenRequestError as exc:
            return _error_response(exc)
        return JSONResponse(issued.to_json(), headers=_NO_STORE)

    @router.get("/auth/jwks.json", name="dev_jwks", summary="Public keys of the development issuer")
    async def jwks() -> JSONResponse:
        keys = await run_in_threadpool(issuer.public_jwks)
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/.well-known/smart-configuration", summary="SMART on FHIR configuration")
    async def smart_configuration(request: Request) -> dict[str, Any]:
        return {
            "issuer": issuer.issuer,
            "jwks_uri": str(request.url_for("dev_jwks")),
            "token_endpoint": str(request.url_for("dev_token")),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": issuer.clients.scopes_supported(),
            "capabilities": ["client-confidential-symmetric", "permission-v1", "permission-v2"],
        }

    return router
