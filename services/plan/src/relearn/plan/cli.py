"""``relearn-plan serve|worker|migrate|revision``."""

from __future__ import annotations

from relearn.plan.config import Settings
from relearn.plan.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.plan", Settings, create_app, consumers)
