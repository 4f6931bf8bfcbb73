"""Device gateway: sensor ingest throughput and sensor-to-biofeedback latency, PostgreSQL + the real broker.

The gateway runs as its own process (`relearn-device-gateway serve`: one uvicorn worker, with its outbox
relay and the metrics processor in the same process) on a migrated PostgreSQL database. Devices are
registered (FHIR Device) and their streams bound to patients over the REST API; device tokens carry a
`device` claim. Request bodies are encoded before the clock starts, so the figures are the gateway's, not
the client's JSON encoder's.

1. Ingest throughput (samples/s per gateway process): 8 devices at once, each streaming
   - EMG: 8 channels at 2148 Hz in 0.2 s frames (430 samples x 8 channels), `POST /ingest/frames` with 1
     frame per request (what a live hub sends) and with 10 frames per request (catching up), and over
     `WS /ingest/ws` (one frame per message, waiting for each ack);
   - balance: a force plate (Fx Fy Fz Mx My Mz) at 100 Hz in 0.2 s frames, 10 frames per request.
   "samples" are sample rows (one per time point, all channels); channel-samples are x channels. A 429
   (outbox backlog above its limit) is waited out as Retry-After says and counted.
2. The outbox drain after each run (how long the relay needed to put the rest on Kafka).
3. Sensor-to-biofeedback latency: 4 EMG streams sending frames at real time (one 0.2 s frame per stream
   every 0.2 s) over the ingest WebSocket, and then over HTTP, each with a `WS /biofeedback/ws` subscriber
   connected; latency = receive time of the biofeedback message for a frame - the time the frame was sent
   (= when its last sample existed). Skipped, with a note, if this gateway build does not serve
   `/biofeedback/ws` yet.
4. The ceiling: the raw kafka-python producer sending the very raw-event payloads the relay published in
   this run (read back from the outbox) to a scratch topic, with the relay's settings (`producer_config`:
   idempotent, acks=all, linger 5 ms, 512 kB batches, so one request carries many ~20 kB frame events),
   then the same with gzip compression. kafka-python checksums every record batch (CRC-32C) in pure Python
   unless the `crc32c` package is installed (it is a dependency of relearn-shared): ~6 MB/s without it.

Each ingest run also prints the gateway process's CPU time per frame, and the machine's load average is
printed at the start and the end: the machine is shared, so read the figures against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kafka import KafkaProducer
from sqlalchemy import func, select
from sqlmodel import col
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus, WebSocketException

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import ISSUER, make_issuer
from relearn.devtools.bench import BenchContext, report, service_process
from relearn.shared.events import OutboxEvent, Topic, ensure_topics, producer_config
from relearn.shared.events.kafka import close_producer
from relearn.shared.migrations import upgrade
from relearn.shared.service import make_engine

EMG_RATE = 2148.0
EMG_CHANNELS = [{"name": f"muscle-{i}", "unit": "uV"} for i in range(8)]
PLATE_RATE = 100.0
PLATE_CHANNELS = [
    {"name": n, "unit": "N" if n.startswith("F") else "N.m"} for n in ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
]
FRAME_S = 0.2
DEVICES = 8
DEVICE_SCOPE = "system/Observation.write"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


# -- setup over the API -----------------------------------------------------------------------------------


class Clinic:
    """Registers devices and opens stream bindings as a clinician's app would."""

    def __init__(self, base: str, issuer: DevIssuer) -> None:
        self.base = base
        self.issuer = issuer
        self.admin = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'user/*.*')}"}

    def device_token(self, device: str) -> str:
        self.issuer.clients.register_device("device-gateway-dev", device)
        return self.issuer.mint("device-gateway-dev", DEVICE_SCOPE, device=device)

    def open(self, stream_type: str, **binding: Any) -> tuple[str, str, str]:
        """(device id, stream id, session id) of a new device with an open stream."""
        device = f"bench-{uuid.uuid4().hex[:10]}"
        session = f"enc-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=self.base, headers=self.admin, timeout=30) as client:
            resp = client.put(
                f"/fhir/Device/{device}",
                json={"resourceType": "Device", "id": device, "status": "active"},
                headers={"Content-Type": "application/fhir+json"},
            )
            if resp.status_code >= 400:
                raise RuntimeError(f"device: {resp.status_code} {resp.text[:300]}")
            body = {
                "device": device,
                "streamType": stream_type,
                "patient": f"pat-{device}",
                "session": session,
            }
            resp = client.post("/streams", json={**body, **binding})
            if resp.status_code != 201:
                raise RuntimeError(f"stream: {resp.status_code} {resp.text[:300]}")
            return device, str(resp.json()["id"]), session


def wire_frames(
    device: str, stream: str, stream_type: str, rate: float, channels: list[dict[str, str]], count: int
) -> list[dict[str, Any]]:
    """`count` consecutive 0.2 s frames of plausible data, camelCase as devices send them."""
    n = round(FRAME_S * rate)
    rng = np.random.default_rng(7)
    frames = []
    for seq in range(count):
        if stream_type == "emg":
            values = np.round(rng.normal(0, 40.0, size=(n, len(channels))), 3)
        else:
            values = np.column_stack(
                [rng.normal(0, 2, n), rng.normal(0, 2, n), 700 + rng.normal(0, 5, n)]
                + [rng.normal(0, 3, n) for _ in range(3)]
            ).round(4)
        frames.append(
            {
                "deviceId": device,
                "streamType": stream_type,
                "streamId": stream,
                "sequence": seq,
                "startTime": (T0 + timedelta(seconds=seq * FRAME_S)).isoformat(),
                "samplingRateHz": rate,
                "channels": channels,
                "samples": values.tolist(),
            }
        )
    return frames


# -- the gateway process's CPU time ---------------------------------------------------------------------


def gateway_cpu_s() -> float:
    """CPU seconds (user + system) used so far by the gateway process this benchmark started."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == os.getpid() and b"relearn-device-gateway" in cmdline:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (2 cores shared with other work)"


# -- 1. throughput --------------------------------------------------------------------------------------


async def post_all(
    client: httpx.AsyncClient, token: str, bodies: Sequence[bytes], latencies: list[float]
) -> int:
    """POST each body until accepted; returns how many 429s were waited out."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    waits = 0
    for body in bodies:
        while True:
            t = time.perf_counter()
            resp = await client.post("/ingest/frames", content=body, headers=headers)
            if resp.status_code == 429:
                waits += 1
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            if resp.status_code != 200:
                raise RuntimeError(f"ingest: {resp.status_code} {resp.text[:300]}")
            latencies.append(time.perf_counter() - t)
            break
    return waits


async def http_ingest(
    clinic: Clinic,
    name: str,
    stream_type: str,
    rate: float,
    channels: list[dict[str, str]],
    frames_per_device: int,
    per_request: int,
) -> None:
    streams = [clinic.open(stream_type) for _ in range(DEVICES)]
    plans = []
    for device, stream, _ in streams:
        frames = wire_frames(device, stream, stream_type, rate, channels, frames_per_device)
        bodies = [
            json.dumps({"frames": frames[i : i + per_request]}).encode()
            for i in range(0, len(frames), per_request)
        ]
        plans.append((clinic.device_token(device), bodies))
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=clinic.base, timeout=60) as client:
        cpu0 = gateway_cpu_s()
        t0 = time.perf_counter()
        waits = await asyncio.gather(*(post_all(client, token, bodies, latencies) for token, bodies in plans))
        seconds = time.perf_counter() - t0
        cpu = gateway_cpu_s() - cpu0
    samples = DEVICES * frames_per_device * round(FRAME_S * rate)
    report(name, count=samples, seconds=seconds, latencies_s=latencies, unit="samples")
    extra = f"; {sum(waits)} x 429 waited out" if sum(waits) else ""
    sent = DEVICES * frames_per_device
    print(
        f"    = {samples * len(channels) / seconds:,.0f} channel-samples/s, "
        f"{sent / seconds:,.0f} frames/s; request latency above{extra}",
        flush=True,
    )
    print_cpu(cpu, seconds, sent)


def print_cpu(cpu_s: float, seconds: float, frames: int) -> None:
    print(
        f"    gateway process CPU: {cpu_s:.2f} s = {cpu_s / seconds:.0%} of one core, "
        f"{cpu_s / frames * 1000:.2f} ms per frame (ingest, relay, metrics processor, live hub)",
        flush=True,
    )


async def ws_ingest(clinic: Clinic, frames_per_device: int) -> None:
    streams = [clinic.open("emg") for _ in range(DEVICES)]
    plans = [
        (
            clinic.device_token(device),
            [
                json.dumps(f)
                for f in wire_frames(device, stream, "emg", EMG_RATE, EMG_CHANNELS, frames_per_device)
            ],
        )
        for device, stream, _ in streams
    ]
    latencies: list[float] = []
    url = clinic.base.replace("http://", "ws://") + "/ingest/ws"

    async def device(token: str, messages: list[str]) -> None:
        async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            for message in messages:
                while True:
                    t = time.perf_counter()
                    await ws.send(message)
                    ack = json.loads(await ws.recv())
                    if ack.get("status") == "retry":
                        await asyncio.sleep(ack.get("retryAfterMs", 1000) / 1000)
                        continue
                    if ack.get("status") not in ("accepted", "duplicate"):
                        raise RuntimeError(f"ingest ws: {ack}")
                    latencies.append(time.perf_counter() - t)
                    break

    cpu0 = gateway_cpu_s()
    t0 = time.perf_counter()
    await asyncio.gather(*(device(token, messages) for token, messages in plans))
    seconds = time.perf_counter() - t0
    cpu = gateway_cpu_s() - cpu0
    samples = DEVICES * frames_per_device * round(FRAME_S * EMG_RATE)
    report(
        "EMG 8 ch 2148 Hz, WS /ingest/ws, 1 frame/msg + ack",
        count=samples,
        seconds=seconds,
        latencies_s=latencies,
        unit="samples",
    )
    frames = DEVICES * frames_per_device
    print(f"    = {frames / seconds:,.0f} frames/s; message-to-ack latency above", flush=True)
    print_cpu(cpu, seconds, frames)


def wait_drained(url: str, timeout_s: float = 120) -> tuple[int, float]:
    """(events still unpublished when we started waiting, seconds until the relay had published them)."""
    engine = make_engine(url)
    unpublished = select(func.count()).select_from(OutboxEvent).where(col(OutboxEvent.published_at).is_(None))
    t0 = time.perf_counter()
    try:
        with engine.connect() as conn:
            first = int(conn.execute(unpublished).scalar_one())
        while True:
            with engine.connect() as conn:
                pending = int(conn.execute(unpublished).scalar_one())
            if pending == 0 or time.perf_counter() - t0 > timeout_s:
                return first, time.perf_counter() - t0
            time.sleep(0.05)
    finally:
        engine.dispose()


def print_drain(url: str) -> None:
    backlog, seconds = wait_drained(url)
    print(f"    outbox: {backlog} events were unpublished at the end; drained in {seconds:.2f} s", flush=True)


# -- 3. latency -----------------------------------------------------------------------------------------


async def biofeedback_available(clinic: Clinic, stream: str) -> bool:
    url = clinic.base.replace("http://", "ws://") + f"/biofeedback/ws?stream={stream}"
    token = clinic.issuer.mint("relearn-dev", "user/Observation.read")
    try:
        async with ws_connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return bool(hello.get("type") == "subscribed")
    except (InvalidStatus, WebSocketException, TimeoutError, OSError):
        return False


async def live_latency(clinic: Clinic, frames_per_stream: int, transport: str, streams: int = 4) -> None:
    opened = [
        clinic.open("emg", mvc={"muscle-0": 60.0}, targets={"emgPercentMvcMin": 30.0}) for _ in range(streams)
    ]
    watch_token = clinic.issuer.mint("relearn-dev", "user/Observation.read")
    ws_base = clinic.base.replace("http://", "ws://")
    sent: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    server_side: list[float] = []  # sentAt (server) - sent (client): ingest + filters + fan-out
    updates = 0
    done = asyncio.Event()
    expected = streams * frames_per_stream

    async def watch(stream: str, ready: asyncio.Event) -> None:
        nonlocal updates
        url = f"{ws_base}/biofeedback/ws?stream={stream}"
        async with ws_connect(url, additional_headers={"Authorization": f"Bearer {watch_token}"}) as ws:
            await ws.recv()  # subscribed
            ready.set()
            while len(latencies) < expected:
                try:
                    text = await asyncio.wait_for(ws.recv(), 10)
                except TimeoutError:
                    return
                now = time.time()
                message = json.loads(text)
                if message.get("type") != "emg":
                    continue
                t_sent = sent.get((stream, message["sequence"]))
                if t_sent is not None:
                    latencies.append(now - t_sent)
                    server_side.append(message["sentAt"] / 1000 - t_sent)
                    updates += len(message["updates"])
            done.set()

    async def device(device_id: str, stream: str) -> None:
        token = clinic.device_token(device_id)
        frames = wire_frames(device_id, stream, "emg", EMG_RATE, EMG_CHANNELS, frames_per_stream)
        texts = [json.dumps(f) for f in frames]
        start = time.perf_counter()
        if transport == "ws":
            async with ws_connect(
                f"{ws_base}/ingest/ws", additional_headers={"Authorization": f"Bearer {token}"}
            ) as ws:
                for seq, text in enumerate(texts):
                    await asyncio.sleep(max(0.0, start + seq * FRAME_S - time.perf_counter()))
                    sent[(stream, seq)] = time.time()
                    await ws.send(text)
                    await ws.recv()  # the ack
        else:
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            async with httpx.AsyncClient(base_url=clinic.base, timeout=30) as client:
                for seq, text in enumerate(texts):
                    await asyncio.sleep(max(0.0, start + seq * FRAME_S - time.perf_counter()))
                    body = ('{"frames":[' + text + "]}").encode()
                    sent[(stream, seq)] = time.time()
                    resp = await client.post("/ingest/frames", content=body, headers=headers)
                    if resp.status_code != 200:
                        raise RuntimeError(f"ingest: {resp.status_code} {resp.text[:200]}")

    readies = [asyncio.Event() for _ in opened]
    watchers = [
        asyncio.create_task(watch(stream, r)) for (_, stream, _), r in zip(opened, readies, strict=True)
    ]
    await asyncio.gather(*(r.wait() for r in readies))
    t0 = time.perf_counter()
    await asyncio.gather(*(device(d, s) for d, s, _ in opened))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 15)
    seconds = time.perf_counter() - t0
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    how = "WS /ingest/ws" if transport == "ws" else "POST /ingest/frames"
    report(
        f"frame sent ({how}) -> biofeedback message received",
        count=len(latencies),
        seconds=seconds,
        latencies_s=latencies,
        unit="frames",
    )
    report(
        "  of which: frame sent -> server sentAt",
        count=len(server_side),
        seconds=seconds,
        latencies_s=server_side,
        unit="frames",
    )
    data_s = len(latencies) * FRAME_S / streams
    print(
        f"    {streams} streams paced at real time; {updates / max(data_s, 1e-9) / streams:.1f} display "
        f"updates per second of data per stream; {expected - len(latencies)} frames without a message",
        flush=True,
    )


# -- 4. the Kafka ceiling -------------------------------------------------------------------------------


def kafka_ceiling(ctx: BenchContext, url: str) -> None:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(col(OutboxEvent.key), col(OutboxEvent.payload))
            .where(col(OutboxEvent.type).like("device.%frame-received%"))
            .order_by(col(OutboxEvent.seq))
        ).all()
    engine.dispose()
    if not rows:
        print("  (no raw frame events in the outbox: nothing to replay)", flush=True)
        return
    payloads = [(str(k).encode(), bytes(p)) for k, p in rows]
    size = sum(len(p) for _, p in payloads)
    topic = f"bench.device.raw.{uuid.uuid4().hex[:6]}"
    ensure_topics(ctx.broker.bootstrap, [Topic(topic, 6, ())])
    try:
        import crc32c  # noqa: F401  (kafka-python uses it for record-batch checksums when present)

        crc = "crc32c C extension"
    except ImportError:
        crc = "pure-Python CRC-32C: install crc32c"
    base = producer_config(ctx.broker.bootstrap, "bench-device-ceiling")
    shown = ("acks", "enable_idempotence", "linger_ms", "batch_size")
    settings = ", ".join(f"{k}={base.get(k, 'default')}" for k in shown)
    print(f"  ceiling producer: {settings}, max_request_size 1 MB (default); {crc}", flush=True)
    variants: list[tuple[str, dict[str, Any]]] = [
        ("relay settings", {}),
        ("relay settings + gzip", {"compression_type": "gzip"}),
    ]
    for label, extra in variants:
        config = {**base, **extra}
        producer = KafkaProducer(**config)
        try:
            producer.send(topic, key=b"warm-up", value=b"{}").get(timeout=30)
            t0 = time.perf_counter()
            futures = [producer.send(topic, key=k, value=p) for k, p in payloads]
            producer.flush(timeout=120)
            for f in futures:
                f.get(timeout=30)
            seconds = time.perf_counter() - t0
        finally:
            close_producer(producer)
        report(f"raw kafka-python producer, {label}", count=len(payloads), seconds=seconds, unit="events")
        print(
            f"    = {size / seconds / 1e6:,.1f} MB/s of this run's raw-event payloads "
            f"(mean {size / len(payloads) / 1e3:,.1f} kB)",
            flush=True,
        )


# -- run ------------------------------------------------------------------------------------------------


async def load(ctx: BenchContext, base: str, issuer: DevIssuer, url: str) -> None:
    clinic = Clinic(base, issuer)
    print(f"  load average at start: {load_average()}", flush=True)
    frames = max(10, int(50 * ctx.scale))  # per device: 50 x 0.2 s = 10 s of data each
    runs: list[tuple[str, str, float, list[dict[str, str]], int]] = [
        ("EMG 8 ch 2148 Hz, POST 1 frame/request", "emg", EMG_RATE, EMG_CHANNELS, 1),
        ("EMG 8 ch 2148 Hz, POST 10 frames/request", "emg", EMG_RATE, EMG_CHANNELS, 10),
        ("force plate 6 ch 100 Hz, POST 10 frames/request", "force-plate", PLATE_RATE, PLATE_CHANNELS, 10),
    ]
    for name, stream_type, rate, channels, per_request in runs:
        await http_ingest(clinic, name, stream_type, rate, channels, frames, per_request)
        await asyncio.to_thread(print_drain, url)
    await ws_ingest(clinic, frames)
    await asyncio.to_thread(print_drain, url)

    probe = clinic.open("emg")
    if not await biofeedback_available(clinic, probe[1]):
        print(
            "  (this gateway build does not serve WS /biofeedback/ws yet: biofeedback latency skipped)",
            flush=True,
        )
        return
    paced = max(10, int(100 * ctx.scale))  # 20 s of data per stream
    await live_latency(clinic, paced, "ws")
    await live_latency(clinic, paced, "http")


def run(ctx: BenchContext) -> None:
    url = ctx.pg_database("bench_device_gateway")
    upgrade("relearn.device_gateway", url)
    with tempfile.TemporaryDirectory() as tmp:
        issuer = make_issuer(Path(tmp))
        jwks = issuer.publish()
        with service_process(ctx, "device-gateway", "DEVICE_GATEWAY_", url, jwks, ISSUER) as base:
            asyncio.run(load(ctx, base, issuer, url))
    kafka_ceiling(ctx, url)
    print(f"  load average at the end: {load_average()}", flush=True)
