"""``relearn-reports serve|worker|migrate|revision|check-migrations``."""

from __future__ import annotations

from relearn.reports.config import Settings
from relearn.reports.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.reports", Settings, create_app, consumers)
