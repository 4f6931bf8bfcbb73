"""A lost database connection is a retryable 503 with Retry-After, not a 500; the retry succeeds.

The backends of the test's own PostgreSQL database are terminated (``pg_terminate_backend``, what a
database restart or failover does to open connections) while a create is inside its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from relearn.shared.db import make_engine
from relearn.shared.fhir import jsontext
from relearn.shared.fhir.store import FhirStore, ResourceChange

SYSTEM = "urn:relearn:test:db-errors"


@pytest.fixture
def app_and_url(
    pg_database: Callable[[str], str], make_app: Callable[[str], tuple[FastAPI, FhirStore, Engine]]
) -> Iterator[tuple[TestClient, FhirStore, Engine, str]]:
    url = pg_database("dberrors")
    app, store, engine = make_app(url)
    with TestClient(app) as client:
        yield client, store, engine, url
    engine.dispose()


def _terminate_every_backend_of(url: str) -> int:
    """What a database restart does to the service's open connections (run from another connection)."""
    killer = make_engine(url)
    try:
        with killer.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            return int(killed)
    finally:
        killer.dispose()


def _post(client: TestClient, body: dict[str, Any]) -> Any:
    return client.post(
        "/fhir/Observation",
        content=jsontext.dumps(body),
        headers={"Authorization": "Bearer system", "Content-Type": "application/fhir+json"},
    )


def test_a_lost_connection_is_503_with_retry_after_and_the_retry_succeeds(
    app_and_url: tuple[TestClient, FhirStore, Engine, str],
) -> None:
    client, store, _engine, url = app_and_url
    killed: list[int] = []

    def restart_the_database(session: Session, _change: ResourceChange) -> None:
        if not killed:  # the first attempt only
            killed.append(_terminate_every_backend_of(url))
            session.execute(text("SELECT 1"))  # the request goes on using its (now dead) connection

    value = uuid.uuid4().hex
    body = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "sway"},
        "identifier": [{"system": SYSTEM, "value": value}],
    }
    store.write_hooks.append(restart_the_database)
    try:
        first = _post(client, body)
        assert killed and killed[0] >= 1
        assert first.status_code == 503, first.text
        assert first.headers["Retry-After"] == "2"
        assert first.json()["issue"][0]["code"] == "transient"

        again = _post(client, body)
        assert again.status_code == 201, again.text
    finally:
        store.write_hooks.remove(restart_the_database)
    found = client.get(
        "/fhir/Observation",
        params={"identifier": f"{SYSTEM}|{value}"},
        headers={"Authorization": "Bearer system"},
    )
    assert found.json()["total"] == 1  # the failed attempt stored nothing
