"""A client that retries while its first request is in flight: conditional writes and Idempotency-Key.

Fifty identical requests at once (on PostgreSQL and on the SQLite default) store one resource, and
every one of them gets a success a client can use: 201 for the one that created it, 200 (the match)
or the replayed 201 for the others. A 412 is only for criteria that really match several resources.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from relearn.shared import idempotency
from relearn.shared.fhir import jsontext
from relearn.shared.fhir.store import FhirStore

N = 50
SYSTEM = "urn:relearn:test:order"


class Api:
    """A TestClient on the FHIR test app (conftest helpers cannot be imported under importlib mode)."""

    def __init__(self, client: TestClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine

    @staticmethod
    def json(r: httpx.Response) -> Any:
        return jsontext.loads(r.content)

    @staticmethod
    def new_patient() -> str:
        return f"p{uuid.uuid4().hex[:12]}"

    @staticmethod
    def observation(patient: str, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "subject": {"reference": f"Patient/{patient}"},
            **extra,
        }

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str = "system",
    ) -> httpx.Response:
        h = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json", **(headers or {})}
        content = jsontext.dumps(body) if body is not None else None
        response: httpx.Response = self.client.request(method, path, content=content, headers=h)
        return response

    def get(self, path: str) -> httpx.Response:
        return self.call("GET", path)

    def create(self, resource: dict[str, Any]) -> None:
        assert self.call("POST", "/fhir/Observation", body=resource).status_code == 201

    def search_ids(self, rtype: str, params: dict[str, str]) -> list[str]:
        r = self.client.get(f"/fhir/{rtype}", params=params, headers={"Authorization": "Bearer system"})
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in self.json(r).get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def racing(
    request: pytest.FixtureRequest,
    pg_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    make_app: Callable[[str], tuple[FastAPI, FhirStore, Engine]],
) -> Iterator[Api]:
    """The FHIR test app with Idempotency-Key installed, on PostgreSQL then on a SQLite file."""
    if request.param == "postgresql":
        url = pg_database("racing")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('racing') / 'racing.db'}"
    app, _store, engine = make_app(url)
    idempotency.install(app, timedelta(hours=1))
    with TestClient(app) as client:
        yield Api(client, engine)
    engine.dispose()


def _at_once(n: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def _tagged(api: Api, value: str) -> dict[str, Any]:
    return api.observation(api.new_patient(), identifier=[{"system": SYSTEM, "value": value}])


def _ids(api: Api, value: str) -> list[str]:
    return api.search_ids("Observation", {"identifier": f"{SYSTEM}|{value}"})


def test_fifty_identical_conditional_creates_store_one_and_all_succeed(racing: Api) -> None:
    value = uuid.uuid4().hex
    body = _tagged(racing, value)
    condition = {"If-None-Exist": f"identifier={SYSTEM}|{value}"}

    answers = _at_once(N, lambda: racing.call("POST", "/fhir/Observation", body=body, headers=condition))

    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 200: N - 1}, [r.text for r in answers if r.status_code not in (200, 201)]
    ids = _ids(racing, value)
    assert len(ids) == 1
    assert {Api.json(r)["id"] for r in answers} == set(ids)
    # And the identifier stays usable: the next conditional create finds it instead of a 412.
    again = racing.call("POST", "/fhir/Observation", body=body, headers=condition)
    assert again.status_code == 200


def test_fifty_identical_conditional_updates_store_one(racing: Api) -> None:
    value = uuid.uuid4().hex
    body = _tagged(racing, value)
    url = f"/fhir/Observation?identifier={SYSTEM}|{value}"

    answers = _at_once(N, lambda: racing.call("PUT", url, body=body))

    statuses = Counter(r.status_code for r in answers)
    assert statuses == {201: 1, 200: N - 1}, [r.text for r in answers if r.status_code not in (200, 201)]
    ids = _ids(racing, value)
    assert len(ids) == 1
    version = racing.get(f"/fhir/Observation/{ids[0]}")
    assert Api.json(version)["meta"]["versionId"] == str(N)


def test_a_real_multiple_match_is_still_412(racing: Api) -> None:
    value = uuid.uuid4().hex
    racing.create(_tagged(racing, value))
    racing.create(_tagged(racing, value))
    r = racing.call(
        "POST",
        "/fhir/Observation",
        body=_tagged(racing, value),
        headers={"If-None-Exist": f"identifier={SYSTEM}|{value}"},
    )
    assert r.status_code == 412
    assert "matched 2" in r.text


def _keyed(racing: Api, body: dict[str, Any], key: str, token: str = "system") -> httpx.Response:
    return racing.call("POST", "/fhir/Observation", body=body, headers={"Idempotency-Key": key}, token=token)


def test_fifty_identical_idempotent_posts_store_one_and_replay_its_answer(racing: Api) -> None:
    value, key = uuid.uuid4().hex, str(uuid.uuid4())
    body = _tagged(racing, value)

    answers = _at_once(N, lambda: _keyed(racing, body, key))

    assert Counter(r.status_code for r in answers) == {201: N}, [r.text for r in answers]
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == N - 1
    assert len({r.headers["Location"] for r in answers}) == 1
    assert len({r.content for r in answers}) == 1
    assert len(_ids(racing, value)) == 1


def test_a_key_reused_for_another_request_is_422_naming_the_header(racing: Api) -> None:
    key = str(uuid.uuid4())
    assert _keyed(racing, _tagged(racing, "a"), key).status_code == 201
    r = _keyed(racing, _tagged(racing, "b"), key)
    assert r.status_code == 422
    assert Api.json(r)["issue"][0]["expression"] == ["Idempotency-Key"]


def test_keys_belong_to_their_caller(racing: Api) -> None:
    """Another client sending the same key and body gets its own write, never the first caller's answer."""
    key, body = str(uuid.uuid4()), _tagged(racing, uuid.uuid4().hex)
    body["subject"] = {"reference": "Patient/a"}
    first = _keyed(racing, body, key)
    other = _keyed(racing, body, key, token="pat-a-rw")
    assert (first.status_code, other.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in other.headers
    assert first.headers["Location"] != other.headers["Location"]


def test_an_expired_key_runs_the_request_again(racing: Api) -> None:
    key, value = str(uuid.uuid4()), uuid.uuid4().hex
    body = _tagged(racing, value)
    assert _keyed(racing, body, key).status_code == 201
    with racing.engine.begin() as conn:  # the stored answer is now older than the retention (1 h)
        conn.execute(
            text("UPDATE idempotency_key SET created_at = :old WHERE key = :k"),
            {"old": "2000-01-01 00:00:00", "k": key},
        )
    again = _keyed(racing, body, key)
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert len(_ids(racing, value)) == 2


def test_a_failed_request_stores_nothing_and_can_be_sent_again(racing: Api) -> None:
    key = str(uuid.uuid4())
    bad = {"resourceType": "Observation", "status": "not-a-status"}
    assert _keyed(racing, bad, key).status_code == 400
    body = _tagged(racing, uuid.uuid4().hex)
    r = _keyed(racing, body, key)
    assert r.status_code == 201  # the key was not spent on the failure


@pytest.mark.parametrize("key", ["", "x" * 256, "two words"])
def test_an_unusable_key_is_400_naming_the_header(racing: Api, key: str) -> None:
    r = racing.call(
        "POST",
        "/fhir/Observation",
        body=_tagged(racing, "k"),
        headers={"Idempotency-Key": key},
    )
    assert r.status_code == 400
    assert Api.json(r)["issue"][0]["expression"] == ["Idempotency-Key"]
