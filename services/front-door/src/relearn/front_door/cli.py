"""``relearn-front-door serve``."""

from __future__ import annotations

import argparse

import uvicorn

from relearn.front_door.config import Settings
from relearn.front_door.main import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="relearn-front-door")
    parser.add_argument("command", choices=["serve"])
    parser.parse_args()
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
