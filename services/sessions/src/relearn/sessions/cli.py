"""``relearn-sessions serve|worker|migrate|revision``."""

from __future__ import annotations

from relearn.sessions.config import Settings
from relearn.sessions.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.sessions", Settings, create_app, consumers)
