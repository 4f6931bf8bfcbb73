"""Every table of the evaluation database (imported by the migrations' env.py)."""

import relearn.shared.tables  # noqa: F401  (the plumbing tables, for the metadata)
