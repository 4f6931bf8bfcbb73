"""Settings of the sessions service (environment prefix ``SESSIONS_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore")

    service_name: str = "sessions"
    port: int = 8083
