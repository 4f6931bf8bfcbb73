"""Real service apps for tests and benchmarks: migrated database, real broker, real development tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI

from relearn.dev_issuer import ClientRegistry, DevIssuer, default_clients_file
from relearn.shared.migrations import upgrade
from relearn.shared.service import ServiceSettings

ISSUER = "http://127.0.0.1:8080/auth"
AUDIENCE = "relearn"
FHIR_BASE = "http://127.0.0.1:8080/fhir"

S = TypeVar("S", bound=ServiceSettings)


def make_issuer(key_dir: Path) -> DevIssuer:
    return DevIssuer(key_dir, ISSUER, AUDIENCE, ClientRegistry.from_file(default_clients_file()))


def service_app(
    package: str,
    settings_cls: type[S],
    create_app: Callable[..., FastAPI],
    *,
    database_url: str,
    bootstrap: str,
    jwks: Path,
    **overrides: Any,
) -> FastAPI:
    """Migrate the service's database, then build its app the way `serve` does."""
    upgrade(package, database_url)
    settings = settings_cls(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        auth_jwks=str(jwks),
        auth_issuer=ISSUER,
        auth_audience=AUDIENCE,
        fhir_base_url=FHIR_BASE,
        environment="test",
        **overrides,
    )
    return create_app(settings)


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll until ``predicate()`` is truthy; the value is returned. Not a timing assertion."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)
