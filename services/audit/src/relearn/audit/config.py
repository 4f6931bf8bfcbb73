"""Settings of the audit service (environment prefix ``AUDIT_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    service_name: str = "audit"
    port: int = 8087
    # Audit events stored per consumer transaction at most (one poll's worth).
    store_batch: int = Field(default=200, ge=1, le=1000)
