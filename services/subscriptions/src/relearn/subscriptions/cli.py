"""``relearn-subscriptions serve|worker|migrate|revision|check-migrations``."""

from __future__ import annotations

from relearn.shared.service import service_main
from relearn.subscriptions.config import Settings
from relearn.subscriptions.main import consumers, create_app


def main() -> None:
    service_main("relearn.subscriptions", Settings, create_app, consumers)
