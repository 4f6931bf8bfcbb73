"""Every table of the plan database (imported by the migrations' env.py)."""

import relearn.plan.measurements
import relearn.plan.persistence
import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables  # noqa: F401  (the FHIR store, outbox and processed-event tables)
