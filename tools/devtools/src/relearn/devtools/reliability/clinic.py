"""A clinic working against a running platform while faults happen, and the audit after healing.

- :class:`FrameSender`: the clinic hub streams EMG frames live (device credentials, ``POST /ingest/frames``),
  each batch sent again until it is answered 200 (its frames ``accepted`` or ``duplicate``).
- :class:`Writer`: the clinic writes FHIR Devices through the front door at a steady rate, each with an
  ``Idempotency-Key`` (and the same value as an identifier) sent again, same key, until answered 2xx.
- :class:`Audit`: reads the gateway's database: every acknowledged frame and write stored exactly once,
  every frame event published and handled by the metrics processor, nothing waiting in the outbox.

Every attempt goes to the case's :class:`~relearn.devtools.reliability.ledger.Ledger`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from relearn.devtools.journey.client import Api, PlatformUrls, iso
from relearn.devtools.journey.gateway import Gateway
from relearn.devtools.platform import Platform
from relearn.devtools.reliability.ledger import FAILED, OK, UNKNOWN, Ledger

WRITE_SYSTEM = "urn:relearn:reliability:write"
METRICS_GROUP = "device-gateway-metrics"
FRAME_EVENT = "device.emg-frame-received.v1"


def encode(body: Any) -> bytes:
    """The bytes a client sends, and sends again on a retry (an Idempotency-Key is bound to them)."""
    return json.dumps(body, separators=(",", ":")).encode()


def retry_after_s(resp: httpx.Response, cap: float = 2.0) -> float:
    try:
        return min(float(resp.headers.get("Retry-After", "1")), cap)
    except ValueError:
        return 1.0


def gateway_engine(platform: Platform) -> Engine:
    s = platform.settings
    if s.database_url_template:
        return create_engine(s.database_url_template.format(service="device_gateway"), pool_pre_ping=True)
    return create_engine(f"sqlite:///{platform.var / 'device-gateway.db'}")


class Clinic:
    """The hub, its EMG sensor and a patient on a running platform, with tokens for the clinic and the hub."""

    def __init__(self, platform: Platform, *, channels: int = 2, rate_hz: float = 2000.0) -> None:
        self.platform = platform
        self.api = Api(PlatformUrls.from_settings(platform.settings), timeout_s=60.0)
        self.patient = f"rel-{uuid.uuid4().hex[:10]}"
        self.gateway = Gateway(self.api, self.patient)
        self.gateway.register_devices()
        self.channels = channels
        self.rate_hz = rate_hz
        self.base = self.api.urls.device_gateway
        self.front_door = platform.urls()["front-door"]

    @property
    def clinician(self) -> dict[str, str]:
        return self.api.clinician

    @property
    def device_headers(self) -> dict[str, str]:
        return self.api.device_headers(self.gateway.devices["hub"])

    def open_stream(self) -> str:
        body = {"device": self.gateway.devices["emg"], "streamType": "emg", "patient": self.patient}
        for _ in range(120):  # the gateway may be restarting
            try:
                resp = self.api.http.post(f"{self.base}/streams", json=body, headers=self.clinician)
                if resp.status_code == 201:
                    return str(resp.json()["id"])
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("could not open a stream")

    def frame(self, stream: str, seq: int, samples_per_frame: int, start: datetime) -> dict[str, Any]:
        rng = np.random.default_rng(seq)
        rows = (rng.standard_normal((samples_per_frame, self.channels)) * 20.0).round(3).tolist()
        return {
            "deviceId": self.gateway.devices["emg"],
            "streamType": "emg",
            "streamId": stream,
            "sequence": seq,
            "startTime": iso(start + timedelta(seconds=seq * samples_per_frame / self.rate_hz)),
            "samplingRateHz": self.rate_hz,
            "channels": [{"name": f"ch{i + 1}", "unit": "uV"} for i in range(self.channels)],
            "samples": rows,
        }

    def close(self) -> None:
        self.api.close()


def send_frames(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    batch: list[dict[str, Any]],
    ledger: Ledger,
    key: str,
    *,
    deadline: float,
) -> list[tuple[str, int]] | None:
    """Send one batch until it is answered 200: the (stream, sequence) acknowledged, or None."""
    while time.monotonic() < deadline:
        try:
            resp = http.post(url, json={"frames": batch}, headers=headers)
        except httpx.HTTPError as exc:
            ledger.record("frames", key, UNKNOWN, detail=type(exc).__name__)
            time.sleep(0.2)
            continue
        if resp.status_code == 200:
            results = resp.json()["results"]
            if all(r["status"] in ("accepted", "duplicate") for r in results):
                ledger.record("frames", key, OK, status=200)
                return [(f["streamId"], int(f["sequence"])) for f in batch]
            ledger.record("frames", key, FAILED, status=200, detail=str(results)[:300])
            return None
        ledger.record(
            "frames",
            key,
            FAILED,
            status=resp.status_code,
            retry_after=resp.headers.get("Retry-After"),
            detail=resp.text[:300],
        )
        if resp.status_code in (401, 403, 404, 409, 413, 422):
            return None
        time.sleep(retry_after_s(resp))
    return None


@dataclass
class FrameSender:
    """Streams ``streams`` live recordings: every ``1/frames_per_s`` s a batch of one frame per stream
    (``samples_per_frame`` samples each); each batch is re-sent until acknowledged."""

    clinic: Clinic
    ledger: Ledger
    streams: list[str]
    frames_per_s: float = 10.0
    samples_per_frame: int = 200
    acked: set[tuple[str, int]] = field(default_factory=set)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="frame-sender", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 120.0) -> None:
        self._drain_until = time.monotonic() + drain_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(drain_s + 30)

    def _run(self) -> None:
        start = datetime.now(UTC)
        url = f"{self.clinic.base}/ingest/frames"
        headers = self.clinic.device_headers
        seq = 0
        t0 = time.monotonic()
        with httpx.Client(timeout=10.0) as http:
            while not self._stop.is_set():
                batch = [self.clinic.frame(s, seq, self.samples_per_frame, start) for s in self.streams]
                self.sent += len(batch)
                got = send_frames(
                    http, url, headers, batch, self.ledger, f"seq {seq}", deadline=time.monotonic() + 600
                )
                if got:
                    self.acked.update(got)
                seq += 1
                pause = t0 + seq / self.frames_per_s - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)


@dataclass
class Writer:
    """Creates a FHIR Device through the front door every ``1/rate`` s, each under its own Idempotency-Key,
    re-sent with the same key until a 2xx answer."""

    clinic: Clinic
    ledger: Ledger
    rate: float = 50.0
    workers: int = 16
    acked: set[str] = field(default_factory=set)
    attempted: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(600)

    @staticmethod
    def body(key: str) -> dict[str, Any]:
        return {
            "resourceType": "Device",
            "status": "active",
            "identifier": [{"system": WRITE_SYSTEM, "value": key}],
            "deviceName": [{"name": f"reliability {key[:8]}", "type": "user-friendly-name"}],
        }

    def headers(self, key: str) -> dict[str, str]:
        return {**self.clinic.clinician, "Content-Type": "application/fhir+json", "Idempotency-Key": key}

    def one(self, http: httpx.Client, key: str) -> None:
        """Send the write under ``key`` until a 2xx answer (or a 4xx that says it never will be)."""
        body, headers = encode(self.body(key)), self.headers(key)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                resp = http.post(f"{self.clinic.front_door}/fhir/Device", content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.ledger.record("write", key, UNKNOWN, detail=type(exc).__name__)
                time.sleep(0.3)
                continue
            if resp.status_code in (200, 201):
                self.ledger.record("write", key, OK, status=resp.status_code)
                with self._lock:
                    self.acked.add(key)
                return
            self.ledger.record(
                "write",
                key,
                FAILED,
                status=resp.status_code,
                retry_after=resp.headers.get("Retry-After"),
                detail=resp.text[:300],
            )
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 409, 429):
                return
            time.sleep(retry_after_s(resp))

    def _run(self) -> None:
        t0 = time.monotonic()
        i = 0
        with (
            httpx.Client(timeout=10.0, limits=httpx.Limits(max_connections=self.workers)) as http,
            ThreadPoolExecutor(self.workers) as pool,
        ):
            while not self._stop.is_set():
                key = str(uuid.uuid4())
                self.attempted.add(key)
                pool.submit(self.one, http, key)
                i += 1
                pause = t0 + i / self.rate - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)


@dataclass
class Findings:
    acknowledged: int
    stored: int
    lost: int
    duplicated: int
    pending: int  # outbox rows not yet published, frame events not yet handled
    notes: list[str]


class Audit:
    """What the gateway's database holds for what the clients were told."""

    def __init__(self, platform: Platform) -> None:
        self.engine = gateway_engine(platform)

    def close(self) -> None:
        self.engine.dispose()

    def frames(self, streams: list[str]) -> dict[tuple[str, int], int]:
        if not streams:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT stream_id, sequence, count(*) FROM device_frame "
                    "WHERE stream_id IN :ids GROUP BY stream_id, sequence"
                ).bindparams(_expanding("ids")),
                {"ids": streams},
            ).all()
        return {(r[0], int(r[1])): int(r[2]) for r in rows}

    def writes(self) -> dict[str, int]:
        """Identifier value -> how many live Devices carry it."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT t.code, count(DISTINCT t.resource_id) FROM fhir_search_token t "
                    "JOIN fhir_resource r ON r.resource_type = t.resource_type AND r.id = t.resource_id "
                    "WHERE t.resource_type = 'Device' AND t.param = 'identifier' AND t.system = :sys "
                    "AND NOT r.deleted GROUP BY t.code"
                ),
                {"sys": WRITE_SYSTEM},
            ).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def frame_events(self, device: str) -> tuple[int, int, int]:
        """(frame events staged for ``device``'s frames, not yet published, published but not handled by
        the metrics processor)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT count(*), "
                    "sum(CASE WHEN o.published_at IS NULL THEN 1 ELSE 0 END), "
                    "sum(CASE WHEN o.published_at IS NOT NULL AND p.event_id IS NULL THEN 1 ELSE 0 END) "
                    "FROM outbox_event o LEFT JOIN processed_event p "
                    "ON p.event_id = o.event_id AND p.consumer = :group "
                    "WHERE o.type = :type AND o.key = :device"
                ),
                {"group": METRICS_GROUP, "type": FRAME_EVENT, "device": device},
            ).one()
        return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)

    def findings(
        self,
        device: str,
        frames_acked: set[tuple[str, int]],
        streams: list[str],
        writes_acked: set[str] | None = None,
    ) -> Findings:
        stored_frames = self.frames(streams)
        lost = len([k for k in frames_acked if k not in stored_frames])
        dup = sum(n - 1 for n in stored_frames.values() if n > 1)
        ack = len(frames_acked)
        stored = len([k for k in frames_acked if k in stored_frames])
        notes: list[str] = []
        staged, unpublished, unhandled = self.frame_events(device)
        if staged != len(stored_frames):
            notes.append(f"{len(stored_frames)} frames stored but {staged} frame events staged")
            lost += max(0, len(stored_frames) - staged)
            dup += max(0, staged - len(stored_frames))
        if writes_acked is not None:
            stored_writes = self.writes()
            ack += len(writes_acked)
            stored += len([k for k in writes_acked if stored_writes.get(k, 0) >= 1])
            lost += len([k for k in writes_acked if k not in stored_writes])
            dup += sum(n - 1 for n in stored_writes.values() if n > 1)
        return Findings(ack, stored, lost, dup, unpublished + unhandled, notes)


def _expanding(name: str) -> Any:
    from sqlalchemy import bindparam

    return bindparam(name, expanding=True)


def wait_settled(
    audit: Audit,
    check: Callable[[], Findings],
    *,
    timeout_s: float = 180.0,
) -> tuple[Findings, float]:
    """Poll until nothing is pending (outbox drained, every frame event handled); (findings, seconds)."""
    t0 = time.monotonic()
    while True:
        found = check()
        if found.pending == 0 or time.monotonic() - t0 > timeout_s:
            if found.pending:
                found.notes.append(f"{found.pending} frame events still pending after {timeout_s:.0f} s")
                found.lost += found.pending
            return found, time.monotonic() - t0
        time.sleep(0.5)
