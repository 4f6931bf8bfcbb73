"""``relearn-device-gateway serve|worker|migrate|revision``."""

from __future__ import annotations

from relearn.device_gateway.config import Settings
from relearn.device_gateway.main import consumers, create_app
from relearn.shared.service import service_main


def main() -> None:
    service_main("relearn.device_gateway", Settings, create_app, consumers)
