"""Pure signal-processing core of the device gateway: frames, stream assembly, EMG and COP/balance metrics.

No I/O here: the gateway's HTTP and Kafka layers feed `SensorFrame`s in and turn `Metric`s into Observations.
"""

from relearn.device_gateway.signals.frames import (
    MAX_CHANNELS,
    MAX_SAMPLES_PER_FRAME,
    Adc,
    Channel,
    LinearTransfer,
    SensorFrame,
    StreamKey,
    StreamType,
)
from relearn.device_gateway.signals.metrics import Metric, MetricCode, ucum_unit
from relearn.device_gateway.signals.resample import Resampled, TimeGap, find_time_gaps, resample_uniform
from relearn.device_gateway.signals.windows import (
    Gap,
    PushResult,
    Recording,
    Rejected,
    StreamAssembler,
    StreamAssemblers,
    Window,
)

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLES_PER_FRAME",
    "Adc",
    "Channel",
    "Gap",
    "LinearTransfer",
    "Metric",
    "MetricCode",
    "PushResult",
    "Recording",
    "Rejected",
    "Resampled",
    "SensorFrame",
    "StreamAssembler",
    "StreamAssemblers",
    "StreamKey",
    "StreamType",
    "TimeGap",
    "Window",
    "find_time_gaps",
    "resample_uniform",
    "ucum_unit",
]
