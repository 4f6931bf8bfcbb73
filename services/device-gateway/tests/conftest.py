"""The device gateway as it runs: migrated PostgreSQL, the real broker (its outbox relay on), real tokens.

``gateway`` is one app per test module; tests keep apart with their own device, patient and stream ids.
Recordings from ``shared/data/sensors`` are cut into frames as a device would send them (``frames_from``),
and ``raw_events`` reads what the relay published on a raw topic, from the start, for one stream.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, WebSocketDisconnect
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from sqlalchemy.engine import Engine

from relearn.dev_issuer import DevIssuer
from relearn.device_gateway.config import Settings
from relearn.device_gateway.main import create_app
from relearn.devtools.apps import make_issuer, service_app, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import CloudEvent

SENSORS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "sensors"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DEVICE_SCOPE = "system/Observation.write"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Gateway:
    app: FastAPI
    client: TestClient
    engine: Engine
    issuer: DevIssuer
    bootstrap: str

    # -- tokens --------------------------------------------------------------------------------------
    def device_token(self, device: str, scope: str = DEVICE_SCOPE) -> dict[str, str]:
        self.issuer.clients.register_device("device-gateway-dev", device)  # as an operator installs a hub
        token = self.issuer.mint("device-gateway-dev", scope, device=device)
        return {"Authorization": f"Bearer {token}"}

    def token(self, scope: str = "user/*.*", patient: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint('relearn-dev', scope, patient=patient)}"}

    # -- setup as a clinic would do it ---------------------------------------------------------------
    def register_device(self, device: str | None = None, *, parent: str | None = None, **extra: Any) -> str:
        """PUT a FHIR Device (optionally carried by hub ``parent``); returns its id."""
        device = device or uid("dev")
        resource: dict[str, Any] = {"resourceType": "Device", "id": device, "status": "active", **extra}
        if parent is not None:
            resource["parent"] = {"reference": f"Device/{parent}"}
        resp = self.client.put(
            f"/fhir/Device/{device}",
            json=resource,
            headers={**self.token("user/Device.write"), "Content-Type": "application/fhir+json"},
        )
        assert resp.status_code in (200, 201), resp.text
        return device

    def open_stream(
        self, device: str, stream_type: str = "emg", *, patient: str | None = None, **body: Any
    ) -> dict[str, Any]:
        payload = {"device": device, "streamType": stream_type, "patient": patient or uid("pat"), **body}
        resp = self.client.post("/streams", json=payload, headers=self.token("user/Observation.write"))
        assert resp.status_code == 201, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def stream(self, stream_id: str) -> dict[str, Any]:
        resp = self.client.get(f"/streams/{stream_id}", headers=self.token("user/Observation.read"))
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    def send(
        self, frames: list[dict[str, Any]], device: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST /ingest/frames with ``device``'s credentials (or ``headers``)."""
        response: httpx.Response = self.client.post(
            "/ingest/frames", json={"frames": frames}, headers=headers or self.device_token(device)
        )
        return response

    def send_all(self, frames: list[dict[str, Any]], device: str, batch: int = 20) -> list[dict[str, Any]]:
        """Send in batches; every batch must be answered 200; returns every result."""
        results: list[dict[str, Any]] = []
        for lo in range(0, len(frames), batch):
            resp = self.send(frames[lo : lo + batch], device)
            assert resp.status_code == 200, resp.text
            results.extend(resp.json()["results"])
        return results


@pytest.fixture(scope="module")
def make_gateway(
    pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Gateway]]:
    """A factory: ``make_gateway(bootstrap)`` starts a gateway app on a fresh database and that broker."""
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    jwks = issuer.publish()
    with contextlib.ExitStack() as stack:

        def make(bootstrap: str) -> Gateway:
            app = service_app(
                "relearn.device_gateway",
                Settings,
                create_app,
                database_url=pg_database("device_gateway"),
                bootstrap=bootstrap,
                jwks=jwks,
            )
            client = stack.enter_context(TestClient(app))
            return Gateway(app, client, app.state.engine, issuer, bootstrap)

        yield make


@pytest.fixture(scope="module")
def gateway(make_gateway: Callable[[str], Gateway], broker: TansuBroker) -> Gateway:
    return make_gateway(broker.bootstrap)


# -- recordings cut into frames -----------------------------------------------------------------------
def load_bmc_emg() -> tuple[np.ndarray, np.ndarray]:
    """(times s, values [n, 1] mV) of the BMC EMG recording (1 kHz)."""
    data = np.loadtxt(SENSORS / "emg" / "bmc_emg.csv", delimiter=",")
    return data[:, 0], data[:, 1:2]


def load_balance(name: str = "BDS00001.txt") -> tuple[np.ndarray, np.ndarray]:
    """(times s, values [n, 6] Fx Fy Fz N, Mx My Mz N.m) of a force-plate trial (100 Hz)."""
    data = np.loadtxt(SENSORS / "balance" / name, skiprows=1)
    return data[:, 0], data[:, 1:7]


def load_uci_gestures() -> tuple[np.ndarray, np.ndarray]:
    """(times in integer ms, irregular; values [n, 8] V) of the UCI gestures recording."""
    data = np.loadtxt(SENSORS / "emg" / "uci_gestures_s10_1_raw_data_11-08_21.03.16.txt", skiprows=1)
    return data[:, 0], data[:, 1:9]


FORCE_PLATE_CHANNELS = [
    {"name": "Fx", "unit": "N"},
    {"name": "Fy", "unit": "N"},
    {"name": "Fz", "unit": "N"},
    {"name": "Mx", "unit": "N.m"},
    {"name": "My", "unit": "N.m"},
    {"name": "Mz", "unit": "N.m"},
]


def frames_from(
    values: np.ndarray,
    *,
    device: str,
    stream: str,
    stream_type: str,
    rate: float,
    channels: list[dict[str, str]],
    frame_len: int,
    offsets_s: np.ndarray | None = None,
    irregular: bool = False,
) -> list[dict[str, Any]]:
    """Wire frames (camelCase JSON) of a recording, sequence 0, 1, ...

    ``offsets_s`` are the sample times from T0; with ``irregular`` each frame carries per-sample
    ``timestamps`` (seconds from its own startTime) instead of relying on the nominal rate.
    """
    offsets = offsets_s if offsets_s is not None else np.arange(values.shape[0]) / rate
    frames = []
    for seq, lo in enumerate(range(0, values.shape[0], frame_len)):
        hi = lo + frame_len
        frame: dict[str, Any] = {
            "deviceId": device,
            "streamType": stream_type,
            "streamId": stream,
            "sequence": seq,
            "startTime": (T0 + timedelta(seconds=float(offsets[lo]))).isoformat(),
            "samplingRateHz": rate,
            "channels": channels,
            "samples": values[lo:hi].tolist(),
        }
        if irregular:
            frame["timestamps"] = (offsets[lo:hi] - offsets[lo]).tolist()
        frames.append(frame)
    return frames


def raw_events(
    bootstrap: str, topic: str, stream_id: str, expected: int, timeout_s: float = 60.0
) -> list[CloudEvent]:
    """The events of ``stream_id`` on ``topic`` in offset order (read from the start, no group), once
    ``expected`` of them arrived; then a short extra poll so that a doubled event would be seen too."""
    reader = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=50
    )
    found: list[tuple[int, int, CloudEvent]] = []

    def poll() -> int:
        for records in reader.poll(timeout_ms=200, max_records=1000).values():
            for r in records:
                event = CloudEvent.from_bytes(r.value)
                if event.data.get("stream") == stream_id:
                    found.append((r.partition, r.offset, event))
        return len(found)

    try:
        partitions = wait_for(lambda: reader.partitions_for_topic(topic), what=f"{topic} to exist")
        reader.assign([TopicPartition(topic, p) for p in partitions])
        reader.seek_to_beginning()
        wait_for(lambda: poll() >= expected, timeout_s=timeout_s, what=f"{expected} events")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # anything more (a doubled frame) shows up here
            poll()
    finally:
        reader.close()
    assert len({p for p, _, _ in found}) == 1, "one stream's events must share one partition"
    return [e for _, _, e in sorted(found, key=lambda f: (f[0], f[1]))]


def close_of(ws: Any, timeout_s: float = 10.0) -> WebSocketDisconnect:
    """The server's close of a test WebSocket (messages before it are skipped), waited for at most
    ``timeout_s``."""

    def until_close() -> WebSocketDisconnect:
        while True:
            try:
                ws.receive_text()
            except WebSocketDisconnect as closed:
                return closed

    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(until_close).result(timeout=timeout_s)
    finally:
        pool.shutdown(wait=False)


@dataclass(frozen=True)
class Kit:
    """What the tests use beside the app (test modules cannot import conftest under importlib mode)."""

    uid: Callable[[str], str] = uid
    frames_from: Callable[..., list[dict[str, Any]]] = frames_from
    raw_events: Callable[..., list[CloudEvent]] = raw_events
    load_bmc_emg: Callable[[], tuple[np.ndarray, np.ndarray]] = load_bmc_emg
    load_balance: Callable[..., tuple[np.ndarray, np.ndarray]] = load_balance
    load_uci_gestures: Callable[[], tuple[np.ndarray, np.ndarray]] = load_uci_gestures
    close_of: Callable[..., WebSocketDisconnect] = close_of
    force_plate_channels: tuple[dict[str, str], ...] = tuple(FORCE_PLATE_CHANNELS)
    t0: datetime = T0


@pytest.fixture(scope="session")
def kit() -> Kit:
    return Kit()
