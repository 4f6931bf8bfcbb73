"""A request past its deadline commits nothing and says so (503 + Retry-After); its retry stores it once.

The deadline is set to zero seconds so that every commit comes after it: no timing in the assertions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from relearn.shared.deadline import DeadlineMiddleware

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


@pytest.fixture(scope="module")
def apis(pg_database: Callable[[str], str], make_app: Callable[..., Any]) -> Iterator[tuple[Api, Api]]:
    """(an app whose requests are always past their deadline, a normal one) on the same database."""
    from shared.tests.fhir.conftest import Api

    url = pg_database("deadline")
    late_app, store, engine = make_app(url)
    late_app.add_middleware(DeadlineMiddleware, seconds=0)
    app, store2, engine2 = make_app(url)
    app.add_middleware(DeadlineMiddleware, seconds=60)
    with TestClient(late_app) as late, TestClient(app) as client:
        yield Api(late, store, engine), Api(client, store2, engine2)
    engine.dispose()
    engine2.dispose()


def _count(api: Api, identifier: str) -> int:
    return int(api.search("Observation", {"identifier": identifier, "_summary": "count"})["total"])


def test_a_write_past_the_deadline_is_rolled_back_and_its_retry_stores_one(apis: tuple[Api, Api]) -> None:
    late, api = apis
    obs = {**api.observation("a"), "identifier": [{"system": "urn:test", "value": "deadline-1"}]}
    resp = late.call("POST", "/fhir/Observation", body=obs)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "1"
    assert api.json(resp)["issue"][0]["code"] == "timeout"
    assert _count(api, "urn:test|deadline-1") == 0

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}] * 2,
    }
    resp = late.call("POST", "/fhir", body=bundle)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "1"
    assert _count(api, "urn:test|deadline-1") == 0

    assert api.call("POST", "/fhir/Observation", body=obs).status_code == 201
    assert _count(api, "urn:test|deadline-1") == 1
