"""Per-service settings, read from the environment with one prefix per service.

Every service subclasses :class:`ServiceSettings` and sets ``model_config`` with its
own ``env_prefix`` (``EVALUATION_``, ``PLAN_`` ...). Nothing else in Relearn reads
``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_var_dir() -> Path:
    """The repo's ``var/`` folder: SQLite files, broker logs, development keys."""
    return Path.cwd() / "var"


class ServiceSettings(BaseSettings):
    """What every Relearn service needs to run: database, broker, auth, its own URL."""

    model_config = SettingsConfigDict(env_prefix="RELEARN_", extra="ignore")

    service_name: str = "relearn"
    environment: str = Field(default="development", description="development | test | production")

    # Database: the embedded default is a SQLite file per service under var/.
    database_url: str = ""

    # Broker: a comma-separated bootstrap list.
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Run the outbox relay and the event consumers inside the API process (make run);
    # production runs them as a separate `worker` command instead.
    run_workers: bool = True
    # HTTP worker processes of `serve` (one per core the pod has; docs/performance.md). With more than one,
    # the serving process supervises them and runs the relay and consumers (run_workers) once.
    http_workers: int = Field(default=1, ge=1, le=64)
    # Create missing topics at start (local broker). Off in production, where topics are
    # declared (KafkaTopic resources, the compose topics job) with real replication.
    create_topics: bool = True

    # Auth: tokens are verified against this JSON Web Key Set (file path or http(s) URL).
    auth_jwks: str = ""
    auth_issuer: str = "http://127.0.0.1:8080/auth"
    auth_audience: str = "relearn"

    # Where this service is reachable, and the one FHIR base URL EHRs use.
    host: str = "127.0.0.1"
    port: int = 8000
    fhir_base_url: str = "http://127.0.0.1:8080/fhir"

    log_level: str = "INFO"

    # Work of a request still running after this many seconds is rolled back (503 + Retry-After), so the
    # front door's upstream timeout (30 s), which must be longer, never hides a commit.
    request_deadline_s: float = Field(default=25.0, gt=0, le=600)

    # Input limits (docs/api.md, "Limits"): each refused with a 4xx OperationOutcome naming it.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, description="request body (413)")
    max_json_depth: int = Field(default=64, ge=8, le=512, description="JSON nesting (400)")
    max_query_bytes: int = Field(default=32 * 1024, ge=1024, description="query string (414)")
    max_bundle_entries: int = Field(default=1000, ge=1, description="entries of a batch/transaction (413)")
    max_search_params: int = Field(default=50, ge=1, description="parameters of one search (400)")
    max_search_values: int = Field(default=100, ge=1, description="values of one search parameter (400)")
    max_page_offset: int = Field(default=100_000, ge=0, description="paging offset (400)")
    # Published outbox rows are deleted after this long (the broker keeps the events; the rows only
    # serve an operator looking into a recent incident).
    outbox_retention_s: float = Field(default=86400.0, gt=0)

    # How long an Idempotency-Key's stored answer is replayed (then the key may be used again).
    idempotency_retention_s: float = Field(default=86400.0, gt=0)

    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file ``var/<service>.db``."""
        if self.database_url:
            return self.database_url
        var = default_var_dir()
        var.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{var / (self.service_name + '.db')}"
