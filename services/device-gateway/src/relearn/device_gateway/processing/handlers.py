"""The metrics processor's consumer: the raw EMG and balance topics, group `device-gateway-metrics`, each
event type handled by the processor (`service.MetricsProcessor`, which decodes it with `events`).

`metrics_consumer(settings, engine)` is the consumer for `create_service_app(consumers=...)`;
`metrics_consumers` has the `WorkerFactory` signature.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine

from relearn.device_gateway.config import Settings
from relearn.device_gateway.processing.service import MetricsProcessor
from relearn.shared.events import DEVICE_RAW_BALANCE, DEVICE_RAW_EMG, EventConsumer
from relearn.shared.service import ServiceSettings

GROUP = "device-gateway-metrics"


def metrics_consumer(
    settings: ServiceSettings,
    engine: Engine,
    processor: MetricsProcessor | None = None,
    *,
    group_id: str = GROUP,
) -> EventConsumer:
    """The metrics consumer; `processor` holds the per-stream state (a new one by default)."""
    if processor is None:
        limits = settings if isinstance(settings, Settings) else Settings()
        # Frames are stored before their events exist: no recording is kept in memory while streaming, the
        # close reads it back from the frames table (at most metrics_recording_mib).
        processor = MetricsProcessor(
            max_streams=limits.metrics_max_open_streams,
            recording_bytes=0,
            close_bytes=int(limits.metrics_recording_mib * 1024 * 1024),
        )
    return EventConsumer(
        engine,
        settings.kafka_bootstrap,
        group_id=group_id,
        topics=[DEVICE_RAW_EMG, DEVICE_RAW_BALANCE],
        handlers=processor.handlers(),
    )


def metrics_consumers(engine: Engine, settings: ServiceSettings) -> Sequence[EventConsumer]:
    """`metrics_consumer` with the `relearn.shared.workers.WorkerFactory` signature."""
    return [metrics_consumer(settings, engine)]
