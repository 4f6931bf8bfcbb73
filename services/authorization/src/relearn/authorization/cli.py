"""``relearn-authorization serve|worker|migrate|revision|check-migrations``."""

from __future__ import annotations

from relearn.authorization.config import Settings
from relearn.authorization.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.authorization", Settings, create_app, consumers)
