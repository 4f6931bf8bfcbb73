"""Every table of the sessions database (imported by the migrations' env.py)."""

import relearn.sessions.read_model
import relearn.sessions.session_log
import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables
import relearn.shared.idempotency  # noqa: F401  (idempotency keys; the FHIR store, outbox and processed-event tables)
