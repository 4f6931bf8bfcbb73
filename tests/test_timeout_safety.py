"""A timeout never hides a write, under load; a client that leaves mid-request stores nothing.

The device gateway (PostgreSQL) and a front door run under uvicorn on real sockets in this process; load
threads create Devices on the gateway beside the test the whole time. The front door's upstream timeout is
set to about the median time a create takes under that load, so many creates through it run out of time:
the service's deadline (the front door tells it how long it waits, ``X-Request-Timeout-Ms``) rolls them
back and answers 503, or the front door answers 504 and closes the connection, which the service sees as a
disconnect and rolls back. Each such request must have left nothing stored; its retry (same
``Idempotency-Key``, or the same ``If-None-Exist``) stores exactly one Device.

A client that disconnects mid-request (its own timeout, directly at the service and through the front
door): a transaction too large to finish before the client leaves stores none of its entries; single
creates abandoned at random points store nothing unless the commit happened, and then the retry with the
same key answers the stored one (``Idempotent-Replayed``), so each ends with exactly one Device.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from relearn.devtools.apps import FHIR_BASE, make_issuer, service_app
from relearn.devtools.served import Served
from relearn.front_door.config import Settings as FrontDoorSettings
from relearn.front_door.main import create_app as front_door_app

SYSTEM = "urn:relearn:test:timeout-serial"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
LOAD_THREADS = 2
MAX_LOAD_S = 120.0  # the load stops by itself at the latest after this


@dataclass
class Stack:
    gateway: Served
    door: Served
    door_settings: FrontDoorSettings
    token: str

    def client(self, base: str, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=base, timeout=timeout, headers={"Authorization": f"Bearer {self.token}"})

    def stored(self, serial: str) -> int:
        with self.client(self.gateway.url) as c:
            bundle = c.get("/fhir/Device", params={"identifier": f"{SYSTEM}|{serial}", "_total": "accurate"})
            assert bundle.status_code == 200, bundle.text
            return len(bundle.json().get("entry", []))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pg_database: Callable[[str], str]) -> Iterator[Stack]:
    import relearn.device_gateway.config as gw_config
    import relearn.device_gateway.main as gw_main

    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    gateway_app = service_app(
        "relearn.device_gateway",
        gw_config.Settings,
        gw_main.create_app,
        database_url=pg_database("device_gateway"),
        bootstrap="127.0.0.1:1",  # no broker needed: events stay in the outbox
        jwks=issuer.publish(),
        run_workers=False,
        create_topics=False,
    )
    gateway = Served(gateway_app)
    door_settings = FrontDoorSettings(
        upstreams={"device-gateway": gateway.url},
        fhir_base_url=FHIR_BASE,
        upstream_timeout_s=30.0,
        dev_issuer_enabled=False,
        environment="test",
    )
    door = Served(front_door_app(door_settings))
    token = issuer.mint("relearn-dev", "system/*.read system/*.write")
    try:
        yield Stack(gateway, door, door_settings, token)
    finally:
        door.stop()
        gateway.stop()


def _device(serial: str) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "status": "active",
        "identifier": [{"system": SYSTEM, "value": serial}],
        "deviceName": [{"name": f"hub {serial}", "type": "user-friendly-name"}],
    }


class Load:
    """Threads creating Devices on the gateway until stopped (bounded in time)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(LOAD_THREADS)]

    def _run(self) -> None:
        started = time.monotonic()
        with self.stack.client(self.stack.gateway.url) as c:
            while not self.stop.is_set() and time.monotonic() - started < MAX_LOAD_S:
                c.post("/fhir/Device", json=_device(f"load-{uuid.uuid4().hex}"), headers=FHIR_JSON)
                self.sent += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def _settle(stack: Stack) -> None:
    """Wait until work the service still had in hand has ended (committed or rolled back)."""
    with stack.client(stack.gateway.url) as c:
        for _ in range(3):  # a few reads after the load: the request threads have drained
            c.get("/fhir/Device", params={"_count": "1"})
    time.sleep(1.0)


@dataclass
class Attempt:
    serial: str
    key: str | None
    status: int


def _create(c: httpx.Client, serial: str, *, keyed: bool) -> Attempt:
    key = str(uuid.uuid4()) if keyed else None
    headers = dict(FHIR_JSON)
    if key is not None:
        headers["Idempotency-Key"] = key
    else:
        headers["If-None-Exist"] = f"identifier={SYSTEM}|{serial}"
    try:
        status = c.post("/fhir/Device", json=_device(serial), headers=headers).status_code
    except httpx.TimeoutException:
        status = 0  # the client itself gave up (only in the disconnect tests)
    return Attempt(serial, key, status)


def _retry(stack: Stack, attempt: Attempt) -> httpx.Response:
    """The client's retry: the same request again, again after a 503/504 (as ``Retry-After`` invites)."""
    headers = dict(FHIR_JSON)
    if attempt.key is not None:
        headers["Idempotency-Key"] = attempt.key
    else:
        headers["If-None-Exist"] = f"identifier={SYSTEM}|{attempt.serial}"
    with stack.client(stack.door.url) as c:
        for _ in range(5):
            answer = c.post("/fhir/Device", json=_device(attempt.serial), headers=headers)
            if answer.status_code not in (503, 504):
                break
            time.sleep(0.5)
        return answer


def test_requests_that_time_out_at_the_front_door_under_load_store_nothing_and_their_retries_one(
    stack: Stack, closing_notes: list[str]
) -> None:
    with Load(stack) as load:
        # The front door's timeout: about the median create time under this load.
        with stack.client(stack.door.url) as c:
            times = []
            for i in range(10):
                t0 = time.monotonic()
                r = c.post("/fhir/Device", json=_device(f"calib-{uuid.uuid4().hex}-{i}"), headers=FHIR_JSON)
                assert r.status_code == 201, r.text
                times.append(time.monotonic() - t0)
        stack.door_settings.upstream_timeout_s = _timeout(times)
        try:
            serials = [f"t-{uuid.uuid4().hex}" for _ in range(40)]
            with stack.client(stack.door.url) as c, ThreadPoolExecutor(max_workers=3) as pool:
                jobs = [pool.submit(_create, c, s, keyed=i % 2 == 0) for i, s in enumerate(serials)]
                attempts = [job.result() for job in jobs]
        finally:
            stack.door_settings.upstream_timeout_s = 30.0
        load_sent = load.sent
    _settle(stack)

    statuses = Counter(a.status for a in attempts)
    assert set(statuses) <= {200, 201, 503, 504}, statuses
    timed_out = [a for a in attempts if a.status in (503, 504)]
    assert timed_out, f"no request timed out (timeout {times}): the test proved nothing"
    # Every request that timed out left nothing stored ...
    leaked = [a.serial for a in timed_out if stack.stored(a.serial) != 0]
    assert leaked == [], f"{len(leaked)} of {len(timed_out)} timed-out requests stored their write"
    # ... those that succeeded stored exactly one ...
    assert all(stack.stored(a.serial) == 1 for a in attempts if a.status in (200, 201))
    # ... and each retry (same key, or same If-None-Exist) stores exactly one.
    for attempt in timed_out:
        answer = _retry(stack, attempt)
        assert answer.status_code == 201, answer.text
        assert stack.stored(attempt.serial) == 1
        again = _retry(stack, attempt)  # a second retry changes nothing
        assert again.status_code in (200, 201), again.text
        assert stack.stored(attempt.serial) == 1
    closing_notes.append(
        f"timeouts under load: {len(attempts)} creates through the front door at a "
        f"{_timeout(times) * 1000:.0f} ms upstream timeout beside {load_sent} load requests: "
        f"{dict(sorted(statuses.items()))}; none of the {len(timed_out)} timed-out ones stored anything, "
        "each retry stored one"
    )


def _timeout(times: list[float]) -> float:
    """Twice the median single create under load: with three at once beside the load, some make it."""
    return max(2 * statistics.median(times), 0.01)


def _transaction(serials: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _device(s), "request": {"method": "POST", "url": "Device"}} for s in serials],
    }


@pytest.mark.parametrize("via", ["service", "front door"])
def test_a_client_that_leaves_mid_transaction_stores_none_of_it(stack: Stack, via: str) -> None:
    base = stack.gateway.url if via == "service" else stack.door.url
    serials = [f"x-{uuid.uuid4().hex}" for _ in range(300)]
    with Load(stack), stack.client(base, timeout=0.3) as c, pytest.raises(httpx.TimeoutException):
        c.post("/fhir", json=_transaction(serials), headers=FHIR_JSON)
    _settle(stack)
    time.sleep(2.0)  # a 300-entry transaction may run a while before its commit is refused
    assert sum(stack.stored(s) for s in serials[:: len(serials) // 8]) == 0
    assert stack.stored(serials[-1]) == 0


@pytest.mark.parametrize("via", ["service", "front door"])
def test_creates_abandoned_by_their_client_store_nothing_unless_committed_and_the_retry_returns_it(
    stack: Stack, via: str, closing_notes: list[str]
) -> None:
    base = stack.gateway.url if via == "service" else stack.door.url
    attempts: list[Attempt] = []
    with Load(stack):
        for i in range(16):
            # Client timeouts spread over the time a create takes, so the client leaves at every stage.
            with stack.client(base, timeout=0.005 + 0.005 * (i % 8)) as c:
                attempts.append(_create(c, f"d-{uuid.uuid4().hex}", keyed=True))
    _settle(stack)
    abandoned = [a for a in attempts if a.status == 0]
    assert abandoned, "no client left mid-request: the test proved nothing"
    committed = 0
    for attempt in abandoned:
        before = stack.stored(attempt.serial)
        assert before in (0, 1)
        answer = _retry(stack, attempt)
        assert answer.status_code == 201, answer.text
        if before == 1:  # the commit had happened: the retry answers it instead of writing again
            committed += 1
            assert answer.headers.get("Idempotent-Replayed") == "true"
        assert stack.stored(attempt.serial) == 1
    closing_notes.append(
        f"client disconnects ({via}): {len(abandoned)} creates abandoned mid-request, {committed} had "
        "committed (their retries replayed them), the rest stored nothing; each retry left one Device"
    )
