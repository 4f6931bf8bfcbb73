"""Settings of the front door (environment prefix ``FRONT_DOOR_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from relearn.shared.service import default_var_dir


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FRONT_DOOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    # The public FHIR base URL EHRs are given; the services build fullUrls on it too.
    fhir_base_url: str = "http://127.0.0.1:8080/fhir"
    # Where each service answers; the front door learns which resource types each one
    # serves from its /fhir/metadata.
    upstreams: dict[str, str] = Field(
        default_factory=lambda: {
            "evaluation": "http://127.0.0.1:8081",
            "plan": "http://127.0.0.1:8082",
            "sessions": "http://127.0.0.1:8083",
            "device-gateway": "http://127.0.0.1:8084",
        }
    )
    upstream_timeout_s: float = 30.0
    # A service that has not published its CapabilityStatement yet is asked again at most this often.
    capability_retry_s: float = Field(default=0.5, ge=0)
    # The services' REST APIs are routed by first path segment, learned from their /openapi.json.
    # OpenAPI does not list WebSocket routes, so those are configured here: prefix -> a path whose
    # owner (learned) serves the socket, or a service name. A list of prefixes means "the owner of
    # the prefix's own first segment". /biofeedback has no HTTP route, so it names /streams.
    websocket_routes: dict[str, str] = Field(
        default_factory=lambda: {"/ingest/ws": "/ingest", "/biofeedback/ws": "/streams"}
    )
    websocket_open_timeout_s: float = 10.0
    websocket_max_message_bytes: int = 16 * 1024 * 1024
    # development | test | production. In production the development issuer refuses to start (its clients'
    # secrets are public) unless insecure_dev_issuer_in_production is set, loudly, on purpose.
    environment: str = "development"
    insecure_dev_issuer_in_production: bool = False
    # The authorization server (services/authorization): when set, /auth/*, /.well-known/smart-configuration
    # and <FHIR base>/.well-known/smart-configuration are its, and the development issuer is not mounted.
    authorization_url: str | None = None
    # Development token issuer (client-credentials) for the local run; off in production.
    dev_issuer_enabled: bool = True
    dev_issuer_url: str = "http://127.0.0.1:8080/auth"
    dev_key_dir: Path = Field(default_factory=lambda: default_var_dir() / "dev-issuer")
    dev_clients_file: Path | None = None
    auth_audience: str = "relearn"
    log_level: str = "INFO"

    # Input limits (docs/api.md, "Limits"), checked before anything is forwarded; the services check them too.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    ingest_max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=8, le=512)
    max_query_bytes: int = Field(default=32 * 1024, ge=1024)
    max_bundle_entries: int = Field(default=1000, ge=1)

    @property
    def mounts_dev_issuer(self) -> bool:
        return self.dev_issuer_enabled and not self.authorization_url

    def check_dev_issuer(self) -> None:
        """Refuse to run the development issuer in production without the explicit, loudly named flag."""
        production = self.environment == "production"
        if self.dev_issuer_enabled and production and self.authorization_url:
            return  # not mounted: the authorization server answers /auth
        if self.dev_issuer_enabled and production and not self.insecure_dev_issuer_in_production:
            raise ValueError(
                "FRONT_DOOR_DEV_ISSUER_ENABLED is on while FRONT_DOOR_ENVIRONMENT=production: the "
                "development issuer mints every scope for clients whose secrets are public. Use the "
                "clinic's identity provider (services' *_AUTH_JWKS / *_AUTH_ISSUER) and "
                "FRONT_DOOR_DEV_ISSUER_ENABLED=false; to run it anyway, set "
                "FRONT_DOOR_INSECURE_DEV_ISSUER_IN_PRODUCTION=true."
            )

    @field_validator("websocket_routes", mode="before")
    @classmethod
    def _prefix_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(prefix): str(prefix) for prefix in value}
        return value
