"""Settings of the authorization service (environment prefix ``AUTHORIZATION_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings, default_var_dir


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUTHORIZATION_", extra="ignore")

    service_name: str = "authorization"
    port: int = 8086

    # The signing keys: a JWKS file of private keys (RS384 on RSA, ES384 on EC P-384). The first key signs,
    # every key is published (rotation: add the new key first, drop the old one after the longest lifetime).
    signing_keys_file: Path = Field(default_factory=lambda: default_var_dir() / "authorization" / "keys.json")
    # Create a missing keys file (one EC P-384 key, mode 0600): by default in development and test only.
    # One host may turn it on with the file on a volume; replicas must share one file (a Secret).
    create_signing_keys: bool | None = None
    # The registered clients and (development) users: JSON directory files, loaded into the database at start.
    clients_file: Path | None = None
    users_file: Path | None = None
    # Client secrets (client_secret_basic / _post) and the `patient` parameter of client_credentials are
    # accepted only in development and test; production needs private_key_jwt (a signed assertion).
    allow_client_secrets: bool | None = None
    # Lifetime of a token for a client that authenticated with a secret (development only: the development
    # issuer's clients and tools hold their tokens that long). Other tokens live access_token_ttl_s.
    dev_secret_token_ttl_s: int = Field(default=3600, ge=30, le=86400)

    # Lifetimes (seconds).
    access_token_ttl_s: int = Field(default=300, ge=30, le=300)
    authorization_code_ttl_s: int = Field(default=60, ge=10, le=600)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=300)
    online_refresh_token_ttl_s: int = Field(default=8 * 3600, ge=300)
    launch_ttl_s: int = Field(default=600, ge=30, le=3600)
    # A client assertion's `exp` may be at most this far ahead (SMART Backend Services: five minutes).
    max_assertion_lifetime_s: int = Field(default=300, ge=30, le=300)
    clock_skew_s: int = Field(default=5, ge=0, le=60)

    # Client JWKS fetched from a jwks_uri: how long to keep one without Cache-Control, the most we keep one,
    # how long a fetch may take, and how large a key set may be.
    jwks_default_max_age_s: int = Field(default=300, ge=0)
    jwks_max_age_cap_s: int = Field(default=86400, ge=0)
    jwks_fetch_timeout_s: float = Field(default=5.0, gt=0, le=30)
    jwks_max_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)

    # Browser apps' origins allowed to call the token endpoint (CORS); "*" allows any.
    cors_origins: list[str] = Field(default_factory=lambda: ["*"])

    def creates_signing_keys(self) -> bool:
        if self.create_signing_keys is not None:
            return self.create_signing_keys
        return self.environment in ("development", "test")

    def secrets_allowed(self) -> bool:
        """Whether client secrets are accepted: the setting, else only in development and test."""
        if self.allow_client_secrets is not None:
            return self.allow_client_secrets and self.environment != "production"
        return self.environment in ("development", "test")

    @property
    def issuer(self) -> str:
        """This server's public URL as clients reach it through the front door (``auth_issuer``, what the
        services trust): the ``iss`` of its tokens and the base of its endpoints."""
        return self.auth_issuer.rstrip("/")

    @property
    def token_url(self) -> str:
        """The token endpoint: the ``aud`` a client assertion must carry."""
        return f"{self.issuer}/token"
