"""``relearn-audit serve|worker|migrate|revision|check-migrations``."""

from __future__ import annotations

from relearn.audit.config import Settings
from relearn.audit.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.audit", Settings, create_app, consumers)
