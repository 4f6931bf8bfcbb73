"""Memory ceiling of each device-gateway process through a long EMG stream and its close.

Runs the gateway as it is deployed - `relearn-device-gateway serve` (ingest, no workers) and
`relearn-device-gateway worker` (outbox relay and metrics consumer) as separate processes on a fresh
PostgreSQL database and a real broker - streams MINUTES of CHANNELS-channel EMG at RATE Hz through
`POST /ingest/frames` as a clinic hub would, closes the stream, waits for the close's metrics, and prints each
process's resident memory: peak while streaming, peak through the close, and the kernel's high-water mark
(VmHWM). Compare with the Kubernetes limits in deploy/k8s/base/apps/device-gateway.yaml (512Mi each).

    uv run --frozen python benchmarks/memory_device_gateway.py            # 10 minutes, 8 channels, 2148 Hz
    MINUTES=2 uv run --frozen python benchmarks/memory_device_gateway.py  # quicker

Only loopback traffic; the broker and database are this run's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select
from sqlmodel import Session, col

from relearn.device_gateway.processing.tables import WindowRecord
from relearn.devtools.apps import AUDIENCE, ISSUER, make_issuer, wait_for
from relearn.devtools.broker import TansuBroker
from relearn.devtools.pg import ScratchDatabases
from relearn.shared.events import OutboxEvent
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine

MINUTES = float(os.environ.get("MINUTES", "10"))
CHANNELS = int(os.environ.get("CHANNELS", "8"))
RATE = float(os.environ.get("RATE", "2148"))
FRAME_S = 0.1
BATCH = 20  # frames per POST


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sampler(threading.Thread):
    """Samples the processes' RSS every 100 ms; `phase` names what is going on."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.phase = "start"
        self.peaks: dict[tuple[str, str], int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, pid in self.pids.items():
                key = (name, self.phase)
                self.peaks[key] = max(self.peaks.get(key, 0), _rss_kib(pid))
            time.sleep(0.1)


def main() -> None:
    exe = Path(sys.executable).with_name("relearn-device-gateway")
    work = Path(tempfile.mkdtemp(prefix="gw-memory-"))
    broker = TansuBroker(log_dir=work / "broker")
    broker.start()
    scratch = ScratchDatabases()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = scratch.create("gw_memory")
        upgrade("relearn.device_gateway", url)
        engine = make_engine(url)
        issuer = make_issuer(work / "keys")
        jwks = issuer.publish()
        port = _free_port()
        env = {
            **os.environ,
            "DEVICE_GATEWAY_DATABASE_URL": url,
            "DEVICE_GATEWAY_KAFKA_BOOTSTRAP": broker.bootstrap,
            "DEVICE_GATEWAY_AUTH_JWKS": str(jwks),
            "DEVICE_GATEWAY_AUTH_ISSUER": ISSUER,
            "DEVICE_GATEWAY_AUTH_AUDIENCE": AUDIENCE,
            "DEVICE_GATEWAY_ENVIRONMENT": "test",
            "DEVICE_GATEWAY_PORT": str(port),
            "DEVICE_GATEWAY_LOG_LEVEL": "WARNING",
        }
        serve_env = {**env, "DEVICE_GATEWAY_RUN_WORKERS": "false"}
        with (work / "serve.log").open("wb") as out:
            procs.append(subprocess.Popen([str(exe), "serve"], env=serve_env, stdout=out, stderr=out))
        with (work / "worker.log").open("wb") as out:
            procs.append(subprocess.Popen([str(exe), "worker"], env=env, stdout=out, stderr=out))
        base = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=base, timeout=60)
        wait_for(lambda: _ok(client), timeout_s=600, what="the gateway to be ready")
        sampler = Sampler({"ingest server": procs[0].pid, "worker": procs[1].pid})
        sampler.start()

        user = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'user/*.*')}"}
        device = f"dev-{uuid.uuid4().hex[:8]}"
        r = client.put(
            f"/fhir/Device/{device}",
            json={"resourceType": "Device", "id": device, "status": "active"},
            headers={**user, "Content-Type": "application/fhir+json"},
        )
        r.raise_for_status()
        patient = f"pat-{uuid.uuid4().hex[:8]}"
        stream = client.post(
            "/streams", json={"device": device, "streamType": "emg", "patient": patient}, headers=user
        ).json()["id"]
        issuer.clients.register_device("device-gateway-dev", device)
        token = issuer.mint("device-gateway-dev", "system/Observation.write", device=device)
        hub = {"Authorization": f"Bearer {token}"}

        sampler.phase = "streaming"
        rng = np.random.default_rng(1)
        per_frame = round(FRAME_S * RATE)
        total = int(MINUTES * 60 * RATE)
        channels = [{"name": f"ch{i + 1}", "unit": "mV"} for i in range(CHANNELS)]
        t0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        started = time.monotonic()
        seq = 0
        batch: list[dict[str, Any]] = []
        for lo in range(0, total, per_frame):
            n = min(per_frame, total - lo)
            batch.append(
                {
                    "deviceId": device,
                    "streamType": "emg",
                    "streamId": stream,
                    "sequence": seq,
                    "startTime": (t0 + timedelta(seconds=lo / RATE)).isoformat(),
                    "samplingRateHz": RATE,
                    "channels": channels,
                    "samples": np.round(rng.standard_normal((n, CHANNELS)) * 0.05, 5).tolist(),
                }
            )
            seq += 1
            if len(batch) == BATCH:
                _send(client, batch, hub)
                batch = []
        if batch:
            _send(client, batch, hub)
        streamed = time.monotonic() - started
        windows = int(MINUTES * 60)
        wait_for(
            lambda: _windows(engine, stream) >= windows - 1, timeout_s=3600, what="the worker to catch up"
        )
        sampler.phase = "close"
        client.post(f"/streams/{stream}/close", headers=user).raise_for_status()
        started = time.monotonic()
        wait_for(lambda: _completed(engine, stream), timeout_s=3600, what="the close's metrics")
        closing = time.monotonic() - started
        time.sleep(0.5)
        hwm = {name: _rss_kib(pid, "VmHWM") for name, pid in sampler.pids.items()}
        sampler.stop.set()
        sampler.join()
        print(
            f"{MINUTES:g} min, {CHANNELS} channels at {RATE:g} Hz ({seq} frames, {total * CHANNELS:,} "
            f"samples): streamed in {streamed:.0f} s, close took {closing:.1f} s; "
            f"{_windows(engine, stream)} windows"
        )
        print(f"{'process':<15} {'start':>9} {'streaming':>10} {'close':>9} {'VmHWM':>9}   (MiB)")
        for name in sampler.pids:
            p = sampler.peaks
            start, during = p.get((name, "start"), 0), p.get((name, "streaming"), 0)
            print(
                f"{name:<15} {start / 1024:9.0f} {during / 1024:10.0f}"
                f" {p.get((name, 'close'), 0) / 1024:9.0f} {hwm[name] / 1024:9.0f}"
            )
        engine.dispose()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        broker.stop()
        scratch.drop_all()


def _ok(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


def _send(client: httpx.Client, frames: list[dict[str, Any]], headers: dict[str, str]) -> None:
    while True:
        r = client.post("/ingest/frames", json={"frames": frames}, headers=headers)
        if r.status_code == 429:  # back-pressure: the broker or worker is behind
            time.sleep(float(r.headers.get("Retry-After", "1")))
            continue
        r.raise_for_status()
        return


def _windows(engine: Any, stream: str) -> int:
    with Session(engine) as s:
        query = select(func.count()).select_from(WindowRecord).where(col(WindowRecord.stream_id) == stream)
        return int(s.execute(query).scalar_one())


def _completed(engine: Any, stream: str) -> bool:
    with Session(engine) as s:
        query = (
            select(func.count())
            .select_from(OutboxEvent)
            .where(col(OutboxEvent.type) == "device.stream-metrics-completed.v1")
        )
        return int(s.execute(query).scalar_one()) > 0


def close_only() -> None:
    """`CLOSE_ONLY=1`: the worker's close alone, without HTTP ingest - the recording's frames written straight
    to a fresh database as ingest stores them, then this process (with the worker's imports) handles the
    stream-closed event; prints its resident memory before and its high-water mark after."""
    from relearn.device_gateway.main import consumers  # noqa: F401  (the worker's imports, for the baseline)
    from relearn.device_gateway.processing.service import MetricsProcessor
    from relearn.device_gateway.streams.tables import FrameRecord, StreamRecord
    from relearn.shared.events import CloudEvent
    from relearn.shared.service import transaction

    scratch = ScratchDatabases()
    try:
        url = scratch.create("gw_close_memory")
        upgrade("relearn.device_gateway", url)
        engine = make_engine(url)
        stream, device, patient = "str-close", "dev-close", "pat-close"
        t0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
        per_frame = round(FRAME_S * RATE)
        total = int(MINUTES * 60 * RATE)
        rng = np.random.default_rng(1)
        channels = [{"name": f"ch{i + 1}", "unit": "mV"} for i in range(CHANNELS)]
        with transaction(engine) as s:
            s.add(
                StreamRecord(
                    id=stream,
                    device_id=device,
                    stream_type="emg",
                    patient_id=patient,
                    layout={"samplingRateHz": RATE, "channels": channels, "adc": None},
                    origin=t0,
                    samples=total,
                    status="closed",
                )
            )
        seq = 0
        for lo in range(0, total, per_frame * 200):
            with transaction(engine) as s:
                for flo in range(lo, min(total, lo + per_frame * 200), per_frame):
                    n = min(per_frame, total - flo)
                    block = (rng.standard_normal((n, CHANNELS)) * 0.05).astype("<f8")
                    s.add(
                        FrameRecord(
                            stream_id=stream,
                            sequence=seq,
                            device_id=device,
                            start_time=t0 + timedelta(seconds=flo / RATE),
                            n_samples=n,
                            sample_data=block.tobytes(),
                        )
                    )
                    seq += 1
        closed = CloudEvent.new(
            "/relearn/device-gateway",
            "device.emg-stream-closed.v1",
            device,
            {
                "stream": stream,
                "device": device,
                "patient": patient,
                "session": None,
                "streamType": "emg",
                "origin": t0.isoformat(),
                "protocol": {"cueTime": 1.0},
                "mvc": None,
                "frames": seq,
                "samples": total,
                "gaps": 0,
            },
        )
        processor = MetricsProcessor(recording_bytes=0)
        before = _rss_kib(os.getpid()) / 1024
        started = time.monotonic()
        with transaction(engine) as s:
            processor.on_closed(s, closed)
        took = time.monotonic() - started
        hwm = _rss_kib(os.getpid(), "VmHWM") / 1024
        print(
            f"close of {MINUTES:g} min x {CHANNELS} channels at {RATE:g} Hz ({seq} frames): {took:.1f} s; "
            f"RSS before {before:.0f} MiB, high-water mark {hwm:.0f} MiB; "
            f"{processor.stats.window_metrics} window metrics (every window reconciled), "
            f"{processor.stats.recording_metrics} whole-recording metrics"
        )
        engine.dispose()
    finally:
        scratch.drop_all()


if __name__ == "__main__":
    close_only() if os.environ.get("CLOSE_ONLY") else main()
