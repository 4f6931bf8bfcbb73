"""Settings of the plan service (environment prefix ``PLAN_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from relearn.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PLAN_", extra="ignore")

    service_name: str = "plan"
    port: int = 8082
