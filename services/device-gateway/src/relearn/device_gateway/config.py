"""Settings of the device-gateway service (environment prefix ``DEVICE_GATEWAY_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from relearn.shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEVICE_GATEWAY_", extra="ignore")

    service_name: str = "device-gateway"
    port: int = 8084
