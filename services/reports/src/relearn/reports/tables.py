"""Every table of the reports database (imported by the migrations' env.py): the plumbing tables only.

The reports are DiagnosticReports in the FHIR store (its tables are plumbing); nothing else is kept.
"""

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
