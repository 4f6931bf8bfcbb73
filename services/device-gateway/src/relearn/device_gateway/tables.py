"""Every table of the device-gateway database (imported by the migrations' env.py)."""

import relearn.device_gateway.processing.tables  # the metrics processor's balance trials (Romberg)
import relearn.device_gateway.streams.tables
import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables
import relearn.shared.idempotency  # noqa: F401  (idempotency keys; FHIR store, outbox, processed events; streams, frames, gaps)
