"""The directory files: registered clients and (development) users, as JSON.

Clients (``AUTHORIZATION_CLIENTS_FILE``)::

    {"clients": [
      {"client_id": "hub-7", "jwks": {"keys": [...]}, "scope": "system/Observation.write",
       "device_client": true, "devices": ["hub-7", "hub-7-emg"]},
      {"client_id": "ehr", "jwks_uri": "https://ehr.example/jwks.json", "scope": "system/*.rs",
       "launch_issuer": true},
      {"client_id": "biofeedback-app", "redirect_uris": ["https://app.example/cb"],
       "scope": "launch/patient openid fhirUser offline_access patient/*.rs"},
      {"client_id": "relearn-dev", "client_secret": "dev-secret", "scope": "system/*.*"}
    ]}

How a client authenticates follows from what is registered: a JWKS (inline or ``jwks_uri``) means
``private_key_jwt``; a secret (``client_secret``, or ``client_secret_hash`` from :func:`hash_secret`) means
``client_secret_basic``/``_post`` (development only); neither means a public app (PKCE only). ``"active":
false`` revokes a client. The development issuer's ``dev-clients.json`` reads as it is (``device_claim``
is ``device_client``).

Users (``AUTHORIZATION_USERS_FILE``, development)::

    {"users": [{"username": "pat", "password_hash": "pbkdf2_sha256$...", "fhirUser": "Patient/p1",
                "patient": "p1", "name": "Pat"}]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_HASH_SCHEME = "pbkdf2_sha256"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
FHIR_USER = re.compile(r"^(Patient|Practitioner|PractitionerRole|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}$")


def hash_secret(secret: str, *, iterations: int = 200_000) -> str:
    """A storable hash: ``pbkdf2_sha256$<iterations>$<salt>$<hash>`` (base64), as the development issuer's."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{_HASH_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def check_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored hash (False for no hash)."""
    if stored is None:
        hmac.compare_digest(secret.encode(), secrets.token_hex(16).encode())
        return False
    try:
        scheme, iterations, salt, expected = stored.split("$")
        if scheme != _HASH_SCHEME or not 1000 <= int(iterations) <= 2_000_000:
            return False
        digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), int(iterations))
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except (ValueError, binascii.Error):
        return False


AuthMethod = Literal["private_key_jwt", "client_secret_basic", "none"]


class ClientEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    client_id: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
    name: str = Field(default="", max_length=255, alias="description")
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = Field(default=None, max_length=2048)
    client_secret: str | None = Field(default=None, max_length=255)
    client_secret_hash: str | None = Field(default=None, max_length=255)
    scope: str = Field(default="", max_length=4096)
    grant_types: list[str] | None = None
    redirect_uris: list[str] = Field(default_factory=list, max_length=20)
    device_client: bool = Field(default=False, alias="device_claim")
    devices: list[str] = Field(default_factory=list, max_length=1000)
    launch_issuer: bool = False
    introspection: bool = False
    active: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ClientEntry:
        if self.jwks is not None and self.jwks_uri is not None:
            raise ValueError("give jwks or jwks_uri, not both")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError("jwks must be a JSON Web Key Set (an object with a 'keys' array)")
        if self.client_secret is not None and self.client_secret_hash is not None:
            raise ValueError("give client_secret or client_secret_hash, not both")
        if self.devices and not self.device_client:
            raise ValueError("'devices' needs device_client")
        for device in self.devices:
            if not FHIR_ID.match(device):
                raise ValueError(f"device {device!r} is not a FHIR id")
        for uri in self.redirect_uris:
            if not uri.startswith(("https://", "http://")) or "#" in uri:
                raise ValueError(f"redirect URI {uri!r} must be an absolute http(s) URL without fragment")
        return self

    @property
    def auth_method(self) -> AuthMethod:
        if self.jwks is not None or self.jwks_uri is not None:
            return "private_key_jwt"
        if self.client_secret is not None or self.client_secret_hash is not None:
            return "client_secret_basic"
        return "none"

    def secret_hash(self) -> str | None:
        if self.client_secret is not None:
            return hash_secret(self.client_secret, iterations=10_000)
        return self.client_secret_hash

    def effective_grant_types(self) -> list[str]:
        if self.grant_types is not None:
            return self.grant_types
        if self.redirect_uris:
            return ["authorization_code", "refresh_token"]
        return ["client_credentials"]


class ClientDirectory(BaseModel):
    model_config = ConfigDict(extra="ignore")

    clients: list[ClientEntry] = Field(max_length=100_000)

    @model_validator(mode="after")
    def _unique(self) -> ClientDirectory:
        seen: set[str] = set()
        for client in self.clients:
            if client.client_id in seen:
                raise ValueError(f"client {client.client_id!r} is registered twice")
            seen.add(client.client_id)
        return self


class User(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    username: str = Field(min_length=1, max_length=128)
    password_hash: str = Field(max_length=255)
    fhir_user: str | None = Field(default=None, alias="fhirUser", pattern=FHIR_USER.pattern)
    patient: str | None = Field(default=None, pattern=FHIR_ID.pattern)
    name: str = Field(default="", max_length=255)


class UserDirectory(BaseModel):
    model_config = ConfigDict(extra="ignore")

    users: list[User] = Field(default_factory=list, max_length=100_000)

    def find(self, username: str) -> User | None:
        return next((u for u in self.users if u.username == username), None)

    def authenticate(self, username: str, password: str) -> User | None:
        user = self.find(username)
        ok = check_secret(password, user.password_hash if user else None)
        return user if ok else None


def parse_clients(text: str, origin: str) -> ClientDirectory:
    try:
        return ClientDirectory.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{origin}: not a client directory: {exc}") from None


def parse_users(text: str, origin: str) -> UserDirectory:
    try:
        return UserDirectory.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise ValueError(f"{origin}: not a user directory: {exc}") from None
