"""Settings of the evaluation service (environment prefix ``EVALUATION_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EVALUATION_", extra="ignore")

    service_name: str = "evaluation"
    port: int = 8081
