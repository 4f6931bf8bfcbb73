"""A client that retries while its first request is still in flight stores one thing, not two.

The platform runs as ``make run`` starts it, on PostgreSQL (``running_platform``); every call goes
through the front door. Fifty identical requests at once: conditional creates (``If-None-Exist``),
FHIR creates and a domain API's POST with one ``Idempotency-Key``. Each leaves exactly one resource
and every answer is a success the client can use (201 for the first, 200 or the replayed 201 after).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from relearn.devtools.platform import Platform

N = 50
SYSTEM = "urn:relearn:test:hub-serial"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def door(running_platform: Platform) -> httpx.Client:
    """An HTTP client on the front door's address, with a clinic token (every system scope)."""
    p = running_platform
    resp = httpx.post(
        f"{p.settings.issuer_url}/token",
        data={"grant_type": "client_credentials", "scope": "system/*.read system/*.write"},
        auth=("relearn-dev", "dev-secret"),
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()["access_token"]
    limits = httpx.Limits(max_connections=N)
    with httpx.Client(
        base_url=p.urls()["front-door"],
        timeout=60.0,
        limits=limits,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client


def _at_once(call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=N) as pool:
        return list(pool.map(lambda _: call(), range(N)))


def _device(serial: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "status": "active",
        "identifier": [{"system": SYSTEM, "value": serial}],
        "deviceName": [{"name": f"hub {serial}", "type": "user-friendly-name"}],
    }


def _devices(door: httpx.Client, serial: str) -> list[str]:
    bundle = door.get("/fhir/Device", params={"identifier": f"{SYSTEM}|{serial}"}).json()
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


def _failures(answers: list[httpx.Response]) -> list[str]:
    return [f"{r.status_code} {r.text[:200]}" for r in answers if r.status_code not in (200, 201)]


def test_fifty_identical_conditional_creates_through_the_front_door_store_one(door: httpx.Client) -> None:
    serial = uuid.uuid4().hex
    headers = {**FHIR_JSON, "If-None-Exist": f"identifier={SYSTEM}|{serial}"}

    answers = _at_once(lambda: door.post("/fhir/Device", json=_device(serial), headers=headers))

    assert _failures(answers) == []
    assert Counter(r.status_code for r in answers) == {201: 1, 200: N - 1}
    stored = _devices(door, serial)
    assert len(stored) == 1
    assert {r.json()["id"] for r in answers} == set(stored)


def test_fifty_identical_idempotency_key_creates_through_the_front_door_store_one(door: httpx.Client) -> None:
    serial, key = uuid.uuid4().hex, str(uuid.uuid4())
    headers = {**FHIR_JSON, "Idempotency-Key": key}

    answers = _at_once(lambda: door.post("/fhir/Device", json=_device(serial), headers=headers))

    assert _failures(answers) == []
    assert Counter(r.status_code for r in answers) == {201: N}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in answers) == N - 1
    assert len(_devices(door, serial)) == 1
    assert len({r.headers["Location"] for r in answers}) == 1


def test_fifty_identical_idempotency_key_posts_to_a_domain_api_store_one(door: httpx.Client) -> None:
    """The device gateway's ``POST /streams`` (a REST API behind the front door) with one key."""
    created = door.post("/fhir/Device", json=_device(uuid.uuid4().hex), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    patient = f"pat-{uuid.uuid4().hex[:8]}"
    body = {"device": created.json()["id"], "streamType": "emg", "patient": patient, "session": None}
    key = str(uuid.uuid4())

    answers = _at_once(lambda: door.post("/streams", json=body, headers={"Idempotency-Key": key}))

    assert _failures(answers) == []
    assert Counter(r.status_code for r in answers) == {201: N}
    streams = door.get("/streams", params={"patient": patient}).json()
    assert len(streams) == 1
    assert {r.json()["id"] for r in answers} == {streams[0]["id"]}
    # The same key with another body is refused, naming the header.
    other = door.post("/streams", json={**body, "patient": "someone-else"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    assert other.json()["issue"][0]["expression"] == ["Idempotency-Key"]
