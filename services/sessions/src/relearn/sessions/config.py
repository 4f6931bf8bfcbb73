"""Settings of the sessions service (environment prefix ``SESSIONS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SESSIONS_", extra="ignore")

    service_name: str = "sessions"
    port: int = 8083
    # Remote physiologic monitoring: device data on at least rpm_min_days days of each rpm_period_days-day
    # period (default: CMS's rule for CPT 99454, 16 of 30; relearn.sessions.domain.remote_monitoring).
    rpm_min_days: int = Field(default=16, ge=1, le=366)
    rpm_period_days: int = Field(default=30, ge=1, le=366)
