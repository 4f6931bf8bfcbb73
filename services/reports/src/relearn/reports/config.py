"""Settings of the reports service (environment prefix ``REPORTS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REPORTS_", extra="ignore")

    service_name: str = "reports"
    port: int = 8088

    # Where the reports service reads the course: the platform's front door (its FHIR base URL is
    # ``fhir_base_url``; the services' domain APIs answer at this root), with its own system credential.
    platform_url: str = "http://127.0.0.1:8080"
    token_url: str = "http://127.0.0.1:8080/auth/token"
    client_id: str = "relearn-dev"
    client_secret: str = Field(default="dev-secret", repr=False)
    client_scope: str = "system/*.read"
    http_timeout_s: float = Field(default=20.0, gt=0, le=120)

    # Bounds: resources read per search, points drawn per plot, trials drawn, bytes of one report.
    max_resources: int = Field(default=2000, ge=10, le=20000)
    max_points_per_plot: int = Field(default=400, ge=10, le=10000)
    max_trials: int = Field(default=12, ge=1, le=100)
    max_report_bytes: int = Field(default=6 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
