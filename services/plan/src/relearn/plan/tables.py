"""Every table of the plan database (imported by the migrations' env.py)."""

import relearn.plan.measurements
import relearn.plan.persistence
import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables
import relearn.shared.idempotency  # noqa: F401  (idempotency keys; the FHIR store, outbox and processed-event tables)
