"""Every plumbing table a service's database holds: the FHIR store's, the outbox's, the processed events'
and the idempotency keys'. A service's ``tables.py`` imports this module so that SQLModel's metadata (what
Alembic compares the migrations with) has them; their schema is created by ``plumbing_schema``."""

from __future__ import annotations

import relearn.shared.events.consumer
import relearn.shared.events.outbox
import relearn.shared.fhir.tables
import relearn.shared.idempotency  # noqa: F401
