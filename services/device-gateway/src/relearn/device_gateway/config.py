"""Settings of the device-gateway service (environment prefix ``DEVICE_GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from relearn.shared.service import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DEVICE_GATEWAY_", extra="ignore")

    service_name: str = "device-gateway"
    port: int = 8084

    # Ingest back-pressure: above this many unpublished outbox events (the broker is slow or down),
    # ingest answers 429 + Retry-After and stores nothing, so a device keeps its frames and resends.
    ingest_max_backlog: int = Field(default=20_000, ge=0)
    # How long one backlog count is reused (seconds): the count is cheap but not free per request.
    ingest_backlog_cache_s: float = Field(default=0.1, ge=0)
    # What a refused sender is told to wait (seconds).
    ingest_retry_after_s: int = Field(default=1, ge=1)
    # Largest raw event (bytes of CloudEvent JSON) one frame may become; Kafka's default message limit
    # is 1 MB, so bigger frames are refused with 413 and the sender splits them.
    ingest_max_event_bytes: int = Field(default=900_000, ge=1_000)
    # Most frames in one POST /ingest/frames (or one WebSocket message).
    ingest_max_frames: int = Field(default=1_000, ge=1)
    # Largest POST /ingest/... body (413); other routes take max_body_bytes.
    ingest_max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)

    # Live biofeedback display rate (updates per second per stream; at least 20).
    biofeedback_rate_hz: float = Field(default=25.0, ge=20, le=200)

    # Metrics processor memory: streams assembled at once (a ring of three windows each; the least recently
    # fed is evicted and rebuilt from the frames table when it is fed again), and the largest recording a
    # stream's close reads back from the frames table for whole-recording metrics (one close at a time per
    # worker; 128 MiB holds 14 minutes of 8 channels at 2148 Hz; a longer recording's metrics say which span
    # they cover).
    metrics_max_open_streams: int = Field(default=32, ge=1, le=10_000)
    metrics_recording_mib: float = Field(default=128.0, gt=0, le=4096)
