"""Identities that more than one service derives from event data, defined once.

A device metric becomes one Observation per (patient, device, metric, window, channel): the
evaluation service stores it under this id, the plan service cites it as evidence, so a
replayed or recomputed metric updates the same Observation instead of adding one. The
channel (an EMG channel such as ``vastus-medialis-left``, or a pair ``a/b`` for
co-contraction) tells apart the same metric of several channels over one window; metrics
of a whole stream (balance) have none.
"""

from __future__ import annotations

import uuid
from datetime import datetime

_DEVICE_METRIC_OBSERVATIONS = uuid.UUID("0c7f3b8e-2d4a-4b6f-9a51-7e2f4c9d8a33")


def device_metric_observation_id(
    patient: str, device: str, metric: str, start: datetime, end: datetime, channel: str | None = None
) -> str:
    """The Observation id of one metric over one window of one device's stream for one patient.

    ``channel`` None gives the ids metrics without a channel always had.
    """
    key = f"{patient}|{device}|{metric}|{start.isoformat()}|{end.isoformat()}"
    if channel is not None:
        key += f"|{channel}"
    return str(uuid.uuid5(_DEVICE_METRIC_OBSERVATIONS, key))
