"""Every table of the audit database (imported by the migrations' env.py): only the plumbing tables.

AuditEvent and Provenance-free: the AuditEvents are FHIR resources in the shared store tables.
"""

from __future__ import annotations

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
