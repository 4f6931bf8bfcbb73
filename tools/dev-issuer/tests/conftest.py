"""A development issuer in a temporary key directory, with the client registry shipped for `make run`."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from relearn.dev_issuer import ClientRegistry, DevIssuer

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "relearn"


@pytest.fixture
def clients() -> ClientRegistry:
    """The registry shipped for `make run` (so the tests also prove that file is valid)."""
    shipped = files("relearn.dev_issuer") / "dev-clients.json"
    return ClientRegistry.from_dict(json.loads(shipped.read_text(encoding="utf-8")))


@pytest.fixture
def issuer(tmp_path: Path, clients: ClientRegistry) -> DevIssuer:
    return DevIssuer(tmp_path / "keys", ISSUER, AUDIENCE, clients)
