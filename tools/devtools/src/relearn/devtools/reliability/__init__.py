"""The reliability suite of issue 15: faults injected into a running platform while a clinic writes and
streams, and the accounting afterwards (see docs/reliability.md). ``make reliability`` runs every case and
prints the table; ``tests/reliability/`` runs a short subset in ``make test``."""
