"""Settings of the plan service (environment prefix ``PLAN_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PLAN_", extra="ignore")

    service_name: str = "plan"
    port: int = 8082
    # How often the worker looks for sessions whose wait for their streams' metrics has ended.
    evidence_sweep_interval_s: float = Field(default=15.0, gt=0, le=3600)
