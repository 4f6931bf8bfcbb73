"""Settings of the subscriptions service (environment prefix ``SUBSCRIPTIONS_``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SUBSCRIPTIONS_", extra="ignore")

    service_name: str = "subscriptions"
    port: int = 8085

    # How often the rest-hook sender looks for notifications to send (seconds).
    delivery_poll_s: float = Field(default=0.1, gt=0, le=60)
    # Failed deliveries are retried after min(cap, base * 2**failures) seconds, with full jitter.
    retry_base_s: float = Field(default=0.5, gt=0)
    retry_cap_s: float = Field(default=30.0, gt=0)
    # Where websocket clients connect (the front door's public URL of the binding socket).
    websocket_url: str = "ws://127.0.0.1:8080/subscriptions/ws"
    # Lifetime of a token from $get-ws-binding-token (seconds).
    ws_token_ttl_s: float = Field(default=300.0, gt=0)

    # full-resource payloads: the focus is read at send time through the front door's FHIR base URL with the
    # service's own client-credentials token (docs/deploy.md). No client id: full-resource notifications go
    # out id-only, each saying why in its SubscriptionStatus.
    focus_base_url: str = ""  # default: fhir_base_url
    focus_token_url: str = ""  # default: <auth_issuer>/token
    focus_client_id: str = Field(default="", max_length=255)
    focus_client_secret: SecretStr = SecretStr("")
    focus_scope: str = "system/*.read"
    focus_timeout_s: float = Field(default=10.0, gt=0, le=120)
