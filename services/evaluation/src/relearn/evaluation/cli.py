"""``relearn-evaluation serve|worker|migrate|revision``."""

from __future__ import annotations

from relearn.evaluation.config import Settings
from relearn.evaluation.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.evaluation", Settings, create_app, consumers)
