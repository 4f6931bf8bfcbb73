"""The store works in the caller's transaction: hooks share it; concurrent writers cannot lose a version."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text
from sqlmodel import Session

from relearn.shared.db import transaction
from relearn.shared.fhir.errors import Conflict
from relearn.shared.fhir.store import ResourceChange

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api


@pytest.fixture(scope="module")
def outbox(api: Api) -> str:
    with api.engine.begin() as conn:
        conn.execute(text("CREATE TABLE test_outbox (kind text, resource_id text, version int)"))
    return "test_outbox"


def _outbox_rows(api: Api, rid: str) -> list[tuple[Any, ...]]:
    with api.engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, version FROM test_outbox WHERE resource_id = :i"), {"i": rid})
        return [tuple(r) for r in rows]


def test_write_hooks_run_in_the_writers_transaction(api: Api, outbox: str) -> None:
    store = api.store
    rdef = store.definitions["Observation"]

    def stage(session: Session, change: ResourceChange) -> None:
        session.connection().execute(
            text(f"INSERT INTO {outbox} VALUES (:k, :i, :v)"),
            {"k": change.kind, "i": change.id, "v": change.stored.version_id},
        )

    store.write_hooks.append(stage)
    try:
        with transaction(api.engine) as s:
            obs = store.create(s, rdef, api.observation(api.new_patient()))
            store.update(s, rdef, obs.id, {**obs.resource(), "status": "amended"})
        with transaction(api.engine) as s:
            store.delete(s, rdef, obs.id)
        assert _outbox_rows(api, obs.id) == [("create", 1), ("update", 2), ("delete", 3)]

        # A rolled-back write leaves neither the resource nor its staged event.
        with pytest.raises(RuntimeError), transaction(api.engine) as s:
            lost = store.create(s, rdef, api.observation(api.new_patient()))
            raise RuntimeError("the caller fails after the write")
        assert _outbox_rows(api, lost.id) == []
        with Session(api.engine) as s:
            assert store.get(s, "Observation", lost.id) is None
    finally:
        store.write_hooks.remove(stage)


def test_a_failing_hook_fails_the_write(api: Api) -> None:
    def refuse(_session: Session, _change: ResourceChange) -> None:
        raise Conflict("the outbox is full")

    patient = api.new_patient()
    api.store.write_hooks.append(refuse)
    try:
        resp = api.call("POST", "/fhir/Observation", body=api.observation(patient))
        assert resp.status_code == 409
    finally:
        api.store.write_hooks.remove(refuse)
    assert api.search("Observation", {"patient": patient, "_summary": "count"})["total"] == 0


def _waiting_on_a_lock(api: Api) -> bool:
    with api.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(n)


def test_concurrent_updates_cannot_lose_a_version(api: Api) -> None:
    store = api.store
    rdef = store.definitions["Observation"]
    with transaction(api.engine) as s:
        obs = store.create(s, rdef, api.observation(api.new_patient(), status="preliminary"))
    base = obs.resource()

    first = Session(api.engine)
    store.update(first, rdef, obs.id, {**base, "status": "amended"})  # holds the row, not yet committed
    outcome: dict[str, Any] = {}

    def second_writer() -> None:
        # Reads version 1 (the first writer has not committed) and then waits on its row lock.
        with Session(api.engine) as second:
            try:
                store.update(second, rdef, obs.id, {**base, "status": "corrected"})
                second.commit()
                outcome["result"] = "stored"
            except Conflict as exc:
                second.rollback()
                outcome["result"] = exc

    thread = threading.Thread(target=second_writer)
    thread.start()
    for _ in range(1000):
        if _waiting_on_a_lock(api):
            break
        time.sleep(0.01)
    first.commit()
    first.close()
    thread.join(timeout=30)

    assert isinstance(outcome["result"], Conflict)
    with Session(api.engine) as s:
        current = store.read(s, rdef, obs.id)
        assert current.version_id == 2 and current.resource()["status"] == "amended"
        assert store.history(s, rdef, obs.id).total == 2
