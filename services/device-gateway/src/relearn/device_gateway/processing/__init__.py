"""The metrics stream processor: raw sensor events in, evaluation-coded metric events out.

`handlers` wires the consumer, `service` is the processor (what is computed when), `events` the events in and
out, `repository` its queries on `tables`, `compute` the metric functions over `signals`.
"""

from __future__ import annotations

from relearn.device_gateway.processing.handlers import GROUP, metrics_consumer, metrics_consumers
from relearn.device_gateway.processing.service import MetricsProcessor

__all__ = ["GROUP", "MetricsProcessor", "metrics_consumer", "metrics_consumers"]
