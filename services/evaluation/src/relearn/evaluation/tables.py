"""Every table of the evaluation database (imported by the migrations' env.py)."""

import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables
import relearn.shared.idempotency  # noqa: F401  (idempotency keys; the FHIR store, outbox and processed-event tables)
