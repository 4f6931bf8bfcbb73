"""Every table of the device-gateway database (imported by the migrations' env.py)."""

import relearn.device_gateway.processing.tables  # the metrics processor's balance trials (Romberg)
import relearn.device_gateway.streams.tables
import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
