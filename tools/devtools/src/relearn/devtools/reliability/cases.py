"""The reliability cases (issue 15): each starts what it needs, runs the clinic's load, injects its fault,
heals, and returns a :class:`~relearn.devtools.reliability.ledger.CaseResult`.

``scale`` stretches every duration: 1.0 is the full run (``make reliability``), smaller values the short
subset that ``make test`` runs (``tests/reliability/``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from relearn.devtools.broker import LocalS3, TansuBroker, free_port
from relearn.devtools.pg import ScratchDatabases
from relearn.devtools.platform import Platform, PlatformSettings
from relearn.devtools.reliability.clinic import (
    Audit,
    Clinic,
    Findings,
    FrameSender,
    Writer,
    encode,
    send_frames,
    wait_settled,
)
from relearn.devtools.reliability.ledger import FAILED, OK, UNKNOWN, CaseResult, Ledger
from relearn.shared.events import DEVICE_RAW_EMG, dlq

SERVICES = [spec.name.replace("-", "_") for spec in PlatformSettings().services()]


@contextlib.contextmanager
def platform_for(
    workdir: Path,
    *,
    broker: TansuBroker | None = None,
    separate_workers: bool = False,
    pg_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """The platform as ``make run`` starts it, on fresh PostgreSQL databases (the shared test server, or
    ``pg_url``'s), with ``broker`` if given."""
    databases = ScratchDatabases(pg_url)
    try:
        settings = PlatformSettings.on_free_ports(workdir / "var", databases.create_per_service(SERVICES))
        settings.separate_workers = separate_workers
        platform = Platform(settings, broker=broker, extra_env=dict(extra_env or {}))
        try:
            platform.start(ready_timeout_s=180)
            yield platform
        finally:
            platform.stop()
    finally:
        with contextlib.suppress(Exception):
            databases.drop_all()


def _settle(
    result: CaseResult,
    ledger: Ledger,
    audit: Audit,
    clinic: Clinic,
    sender: FrameSender | None,
    streams: list[str],
    writer: Writer | None = None,
    timeout_s: float = 240.0,
) -> Findings:
    """Stop the load (each client finishes what it had in hand), wait until nothing is pending, account."""
    if writer is not None:
        writer.stop()
    if sender is not None:
        sender.stop()
    device = clinic.gateway.devices["emg"]
    acked = sender.acked if sender is not None else set()
    found, took = wait_settled(
        audit,
        lambda: audit.findings(device, acked, streams, writer.acked if writer is not None else None),
        timeout_s=timeout_s,
    )
    result.acknowledged, result.stored = found.acknowledged, found.stored
    result.lost, result.duplicated = found.lost, found.duplicated
    result.notes.extend(found.notes)
    result.add_ledger(ledger)
    if result.recovery_s is None:
        result.recovery_s = took
    return found


def redelivered(bootstrap: str, topic: str, device: str, timeout_s: float = 60.0) -> tuple[int, int]:
    """(records of ``device`` on ``topic``, how many of them repeat an event id already seen): a repeat is
    the at-least-once publish the consumers must absorb."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        parts = reader.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = reader.end_offsets(tps)
        ids: Counter[str] = Counter()
        key = device.encode()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=500, max_records=2000).values():
                for r in records:
                    if r.key == key:
                        with contextlib.suppress(ValueError):
                            ids[json.loads(r.value)["id"]] += 1
            if all(reader.position(tp) >= ends[tp] for tp in tps):
                break
        return sum(ids.values()), sum(n - 1 for n in ids.values())
    finally:
        reader.close()


# -- R1 ---------------------------------------------------------------------------------------------------
def r1_broker_kill(workdir: Path, scale: float = 1.0, kills: int = 4) -> CaseResult:
    result = CaseResult("R1", f"broker (Tansu on s3) SIGKILLed x{kills} during 50 writes/s and a live stream")
    s3 = LocalS3(workdir / "s3")
    s3.start()
    broker = TansuBroker(workdir / "broker", s3=s3)
    try:
        with platform_for(workdir, broker=broker) as platform:
            ledger = Ledger()
            clinic = Clinic(platform)
            streams = [clinic.open_stream() for _ in range(2)]
            # Live, as the journey's hub sends: 1-second frames (2 kHz). Tansu's s3 engine reads back from
            # the local S3 a few records a second on a busy 2-core machine once restarted.
            sender = FrameSender(clinic, ledger, streams, frames_per_s=1.0, samples_per_frame=2000)
            writer = Writer(clinic, ledger, rate=50.0)
            audit = Audit(platform)
            sender.start()
            writer.start()
            period = 12.0 * scale
            for _ in range(kills):
                time.sleep(period)
                broker.kill()
                time.sleep(3.0)
                broker.start()
            time.sleep(period)
            healed = time.monotonic()
            _settle(result, ledger, audit, clinic, sender, streams, writer, timeout_s=900)
            result.recovery_s = time.monotonic() - healed
            total, again = redelivered(broker.bootstrap, DEVICE_RAW_EMG, clinic.gateway.devices["emg"])
            result.notes.append(f"{total} frame records on the broker, {again} published twice (absorbed)")
            audit.close()
            clinic.close()
    finally:
        broker.stop()
        s3.stop()
    return result


# -- R2 ---------------------------------------------------------------------------------------------------
def _kill_between_send_and_mark(platform: Platform, audit: Audit, timeout_s: float = 30.0) -> bool:
    """SIGKILL the gateway worker after its relay sent a batch and before it marked it published.

    The worker is stopped while frames queue in the outbox; those rows are locked (``FOR UPDATE``) in a
    transaction of ours; the worker goes on, the relay sends them and waits on the lock to mark them; it
    is killed there, and our lock released. True when the relay was seen waiting on the mark."""
    from sqlalchemy import text

    worker = "device-gateway-worker"
    platform.send_signal(worker, signal.SIGSTOP)
    time.sleep(1.0)
    caught = False
    with audit.engine.connect() as conn:
        trans = conn.begin()
        try:
            locked = conn.execute(
                text("SELECT seq FROM outbox_event WHERE published_at IS NULL ORDER BY seq FOR UPDATE")
            ).all()
            platform.send_signal(worker, signal.SIGCONT)
            deadline = time.monotonic() + timeout_s
            while locked and time.monotonic() < deadline and not caught:
                # Statistics views are a snapshot per transaction unless cleared.
                conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND query ILIKE 'UPDATE outbox_event%'"
                    )
                ).scalar_one()
                caught = waiting > 0
                if not caught:
                    time.sleep(0.05)
            platform.send_signal(worker, signal.SIGKILL)
        finally:
            trans.rollback()
    platform.respawn(worker)
    return caught


def r2_relay_kill(workdir: Path, scale: float = 1.0, kills: int = 6) -> CaseResult:
    result = CaseResult("R2", f"outbox relay SIGKILLed x{kills} between send and mark-published")
    with platform_for(workdir, separate_workers=True) as platform:
        ledger = Ledger()
        clinic = Clinic(platform)
        streams = [clinic.open_stream() for _ in range(4)]
        sender = FrameSender(clinic, ledger, streams, frames_per_s=20.0)
        audit = Audit(platform)
        sender.start()
        caught = 0
        for _ in range(kills):
            time.sleep(3.0 * scale + 1.0)
            caught += _kill_between_send_and_mark(platform, audit)
        time.sleep(3.0)
        healed = time.monotonic()
        _settle(result, ledger, audit, clinic, sender, streams)
        result.recovery_s = time.monotonic() - healed
        assert platform.broker is not None
        total, again = redelivered(platform.broker.bootstrap, DEVICE_RAW_EMG, clinic.gateway.devices["emg"])
        result.notes.append(
            f"{caught} of {kills} kills caught the relay between send and mark; {total} frame records on "
            f"the broker, {again} published twice (absorbed: each handled once)"
        )
        if caught == 0 and again == 0:
            result.error = "no kill landed between send and mark-published"
        audit.close()
        clinic.close()
    return result


# -- R3 ---------------------------------------------------------------------------------------------------
def r3_consumer_kill_and_stop(workdir: Path, scale: float = 1.0, stop_s: float = 310.0) -> CaseResult:
    """Every service's worker (relay + consumers) SIGKILLed mid-batch; then one of two gateway workers
    SIGSTOPped for ``stop_s`` (past ``max_poll_interval_ms``, 300 s, in the full run) and continued."""
    if scale < 1.0:  # the short run: past the session timeout (6 s), not max_poll_interval_ms (300 s)
        stop_s = max(15.0, stop_s * scale)
    result = CaseResult("R3", f"each consumer SIGKILLed mid-batch; one SIGSTOPped {stop_s:.0f} s")
    with platform_for(workdir, separate_workers=True) as platform:
        args, env = platform._commands["device-gateway-worker"]
        platform.processes["device-gateway-worker-2"] = platform._spawn("device-gateway-worker-2", args, env)
        ledger = Ledger()
        clinic = Clinic(platform)
        streams = [clinic.open_stream() for _ in range(4)]
        sender = FrameSender(clinic, ledger, streams, frames_per_s=20.0)
        audit = Audit(platform)
        sender.start()
        for name in ["evaluation", "plan", "sessions", "device-gateway", "device-gateway"]:
            time.sleep(4.0 * scale + 1.0)
            platform.send_signal(f"{name}-worker", signal.SIGKILL)
            time.sleep(1.0)
            platform.respawn(f"{name}-worker")
        time.sleep(3.0)
        platform.send_signal("device-gateway-worker", signal.SIGSTOP)
        time.sleep(stop_s)
        platform.send_signal("device-gateway-worker", signal.SIGCONT)
        time.sleep(3.0)
        healed = time.monotonic()
        _settle(result, ledger, audit, clinic, sender, streams)
        result.recovery_s = time.monotonic() - healed
        for name, proc in platform.processes.items():
            if proc.poll() is not None:
                result.notes.append(f"{name} exited with {proc.returncode}")
        audit.close()
        clinic.close()
    return result


# -- R4 ---------------------------------------------------------------------------------------------------
def _can_drop_traffic() -> bool:
    """Root, ``ip netns`` and ``iptables`` (the Debian package) here."""
    import shutil

    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("iptables") is not None


def r4_network_partition(workdir: Path, scale: float = 1.0, outage_s: float = 30.0) -> CaseResult:
    """App-to-broker traffic dropped for ``outage_s``. With iptables (``apt-get install iptables``) the
    whole case runs in a network namespace of its own (its own PostgreSQL cluster, broker and platform on
    the namespace's loopback) and a DROP rule on the broker's port cuts the traffic both ways, connections
    left open and silent; without iptables the broker is SIGSTOPped instead (its sockets stay open and
    silent too), and the result says so."""
    if not _can_drop_traffic():
        result = r4_broker_stopped(workdir, scale, outage_s)
        result.notes.append("iptables not installed: the broker was SIGSTOPped instead of a DROP rule")
        return result
    import sys

    ns = f"relearn-r4-{os.getpid()}"
    out = workdir / "r4.json"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "relearn.devtools.reliability"]
        subprocess.run([*cmd, "R4-netns", "--scale", str(scale), "--json", str(out)], check=False)
        if not out.exists():
            return CaseResult("R4", "app-to-broker traffic dropped (netns + iptables)", error="no result")
        data = json.loads(out.read_text())[0]
        data["case"] = "R4"
        return CaseResult(**data)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def r4_in_namespace(workdir: Path, scale: float = 1.0, outage_s: float = 30.0) -> CaseResult:
    """R4's body, inside its network namespace (started by :func:`r4_network_partition`)."""
    result = CaseResult("R4", f"app-to-broker traffic dropped {outage_s:.0f} s (netns + iptables DROP)")
    pg = OwnPostgres(workdir)
    pg.start()
    try:
        with platform_for(workdir, pg_url=pg.url) as platform:
            assert platform.broker is not None and platform.broker.port is not None
            port = str(platform.broker.port)
            rules = [["OUTPUT", "-p", "tcp", "--dport", port], ["OUTPUT", "-p", "tcp", "--sport", port]]
            ledger = Ledger()
            clinic = Clinic(platform)
            streams = [clinic.open_stream() for _ in range(2)]
            sender = FrameSender(clinic, ledger, streams)
            writer = Writer(clinic, ledger, rate=50.0)
            audit = Audit(platform)
            sender.start()
            writer.start()
            time.sleep(8.0 * scale)
            for rule in rules:
                subprocess.run(["iptables", "-A", *rule, "-j", "DROP"], check=True)
            try:
                time.sleep(outage_s)
            finally:
                for rule in rules:
                    subprocess.run(["iptables", "-D", *rule, "-j", "DROP"], check=False)
            time.sleep(8.0 * scale)
            healed = time.monotonic()
            _settle(result, ledger, audit, clinic, sender, streams, writer)
            result.recovery_s = time.monotonic() - healed
            audit.close()
            clinic.close()
    finally:
        pg.stop()
    return result


def r4_broker_stopped(workdir: Path, scale: float = 1.0, outage_s: float = 30.0) -> CaseResult:
    """R4 without iptables: the broker SIGSTOPped for ``outage_s`` (open sockets, no answers)."""
    result = CaseResult("R4", f"app-to-broker traffic silent for {outage_s:.0f} s (broker SIGSTOPped)")
    with platform_for(workdir) as platform:
        assert platform.broker is not None and platform.broker.pid is not None
        ledger = Ledger()
        clinic = Clinic(platform)
        streams = [clinic.open_stream() for _ in range(2)]
        sender = FrameSender(clinic, ledger, streams)
        writer = Writer(clinic, ledger, rate=50.0)
        audit = Audit(platform)
        sender.start()
        writer.start()
        time.sleep(8.0 * scale)
        os.kill(platform.broker.pid, signal.SIGSTOP)
        try:
            time.sleep(outage_s)
        finally:
            os.kill(platform.broker.pid, signal.SIGCONT)
        time.sleep(8.0 * scale)
        healed = time.monotonic()
        _settle(result, ledger, audit, clinic, sender, streams, writer)
        result.recovery_s = time.monotonic() - healed
        audit.close()
        clinic.close()
    return result


# -- R5 ---------------------------------------------------------------------------------------------------
class OwnPostgres:
    """A throw-away PostgreSQL cluster of this case's own (initdb + pg_ctl as the postgres user, a temp
    directory, a free port): killing its backends or restarting it touches nobody else."""

    def __init__(self, workdir: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = bins[-1].parent
        self.dir = workdir / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *args: str) -> None:
        # No pipes: a server pg_ctl starts would hold them open and the call would never return.
        with open(self.dir.parent / "pg_ctl.log", "ab") as log:
            subprocess.run(
                ["runuser", "-u", "postgres", "--", *args],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "postgres", str(self.dir.parent)], check=True)
        os.chmod(self.dir.parent, 0o755)
        self._as_postgres(str(self.bin / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres")
        self.pg_ctl("start", "-w")

    def pg_ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
        log = str(self.dir.parent / "pg.log")
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.dir), "-l", log, "-o", opts, *args)

    def terminate_backends(self) -> int:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                return len(
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE pid <> pg_backend_pid() AND datname LIKE 'relearn_%'"
                        )
                    ).all()
                )
        finally:
            engine.dispose()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.pg_ctl("stop", "-m", "immediate", "-w")


def r5_database_faults(workdir: Path, scale: float = 1.0) -> CaseResult:
    result = CaseResult(
        "R5", "PostgreSQL backends terminated x3, then the server crash-restarted, during writes"
    )
    pg = OwnPostgres(workdir)
    pg.start()
    try:
        with platform_for(workdir, pg_url=pg.url) as platform:
            ledger = Ledger()
            clinic = Clinic(platform)
            streams = [clinic.open_stream() for _ in range(2)]
            sender = FrameSender(clinic, ledger, streams)
            writer = Writer(clinic, ledger, rate=50.0)
            audit = Audit(platform)
            sender.start()
            writer.start()
            killed = 0
            for _ in range(3):
                time.sleep(6.0 * scale)
                killed += pg.terminate_backends()
            time.sleep(6.0 * scale)
            pg.pg_ctl("restart", "-m", "immediate", "-w")
            time.sleep(8.0 * scale)
            healed = time.monotonic()
            _settle(result, ledger, audit, clinic, sender, streams, writer)
            result.recovery_s = time.monotonic() - healed
            result.notes.append(f"{killed} backends terminated, one immediate restart")
            audit.close()
            clinic.close()
    finally:
        pg.stop()
    return result


# -- R6 ---------------------------------------------------------------------------------------------------
def _cut(url: str, headers: dict[str, str], body: bytes, *, whole: bool) -> None:
    """Send a POST and hang up without reading the answer: mid-body (``whole=False``) or right after it."""
    u = httpx.URL(url)
    head = [
        f"POST {u.raw_path.decode()} HTTP/1.1",
        f"Host: {u.host}:{u.port}",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in headers.items()] + ["Connection: close", "", ""]
    with socket.create_connection((u.host, u.port or 80), timeout=5) as sock:
        sock.sendall("\r\n".join(head).encode())
        sock.sendall(body if whole else body[: len(body) // 2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def r6_client_cuts(platform: Platform, batches: int = 60, writes: int = 60) -> CaseResult:
    """Clients hang up mid-request (half the body) or before reading the answer, then send it again."""
    result = CaseResult("R6", "ingest and write clients cut mid-request, then re-sending")
    ledger = Ledger()
    clinic = Clinic(platform)
    audit = Audit(platform)
    streams = [clinic.open_stream() for _ in range(2)]
    from datetime import UTC, datetime

    start = datetime.now(UTC)
    url = f"{clinic.base}/ingest/frames"
    headers = {**clinic.device_headers, "Content-Type": "application/json"}
    acked: set[tuple[str, int]] = set()
    rng = random.Random(6)
    with httpx.Client(timeout=30.0) as http:
        for seq in range(batches):
            batch = [clinic.frame(s, seq, 200, start) for s in streams]
            body = json.dumps({"frames": batch}).encode()
            for _ in range(rng.randint(1, 2)):
                _cut(url, headers, body, whole=rng.random() < 0.5)
                ledger.record("frames", f"seq {seq}", UNKNOWN, detail="hung up")
            if rng.random() < 0.3:
                time.sleep(0.05)  # sometimes the cut request is done before the resend
            got = send_frames(http, url, headers, batch, ledger, f"seq {seq}", deadline=time.monotonic() + 60)
            acked.update(got or [])
        writer = Writer(clinic, ledger)
        for _ in range(writes):
            key = f"r6-{rng.getrandbits(64):016x}"
            raw = encode(writer.body(key))
            _cut(f"{clinic.front_door}/fhir/Device", writer.headers(key), raw, whole=rng.random() < 0.7)
            ledger.record("write", key, UNKNOWN, detail="hung up")
            if rng.random() < 0.3:
                time.sleep(0.05)
            writer.one(http, key)
    found = _settle_now(result, ledger, audit, clinic, acked, streams, writer.acked)
    del found
    audit.close()
    clinic.close()
    return result


def _settle_now(
    result: CaseResult,
    ledger: Ledger,
    audit: Audit,
    clinic: Clinic,
    acked: set[tuple[str, int]],
    streams: list[str],
    writes: set[str] | None,
    timeout_s: float = 120.0,
) -> Findings:
    device = clinic.gateway.devices["emg"]
    t0 = time.monotonic()
    found, _ = wait_settled(
        audit, lambda: audit.findings(device, acked, streams, writes), timeout_s=timeout_s
    )
    result.acknowledged, result.stored = found.acknowledged, found.stored
    result.lost, result.duplicated = found.lost, found.duplicated
    result.notes.extend(found.notes)
    result.add_ledger(ledger)
    result.recovery_s = time.monotonic() - t0
    return found


# -- R7 ---------------------------------------------------------------------------------------------------
POISON = (
    b"not json at all",
    b'{"specversion": "1.0"}',
    b'{"id": "x", "type": "device.emg-frame-received.v1"}',
)


def r7_poison(platform: Platform, frames: int = 400, every: int = 100) -> CaseResult:
    """1 % of the records on the raw EMG topic are poison (not JSON, not a CloudEvent, a frame event without
    data), on the same partition as a live stream's frames: each goes to the DLQ with error headers and
    the partition keeps moving (every good frame handled)."""
    result = CaseResult("R7", "1 % poison events on a live stream's partition")
    assert platform.broker is not None
    ledger = Ledger()
    clinic = Clinic(platform)
    audit = Audit(platform)
    stream = clinic.open_stream()
    device = clinic.gateway.devices["emg"]
    from datetime import UTC, datetime

    start = datetime.now(UTC)
    url = f"{clinic.base}/ingest/frames"
    producer = KafkaProducer(bootstrap_servers=platform.broker.bootstrap, acks="all")
    marker = device  # the DLQ keeps the key (and the bytes), not the original headers
    poisoned = 0
    acked: set[tuple[str, int]] = set()
    with httpx.Client(timeout=30.0) as http:
        for seq in range(frames):
            batch = [clinic.frame(stream, seq, 100, start)]
            got = send_frames(
                http, url, clinic.device_headers, batch, ledger, f"seq {seq}", deadline=time.monotonic() + 60
            )
            acked.update(got or [])
            if seq % every == every // 2:
                producer.send(
                    DEVICE_RAW_EMG,
                    key=device.encode(),
                    value=POISON[poisoned % len(POISON)],
                )
                poisoned += 1
    producer.flush()
    producer.close()
    _settle_now(result, ledger, audit, clinic, acked, [stream], None)
    # Every poison record in the DLQ, with the error headers.
    dead = _dlq_records(platform.broker.bootstrap, dlq(DEVICE_RAW_EMG), marker, poisoned)
    with_headers = [
        d for d in dead if {"error_type", "error_message", "original_offset"} <= {k for k, _ in d}
    ]
    result.acknowledged += poisoned
    result.stored += len(with_headers)
    result.lost += max(0, poisoned - len(dead))
    result.duplicated += max(0, len(dead) - poisoned)
    result.notes.append(f"{poisoned} poison records, {len(dead)} in {dlq(DEVICE_RAW_EMG)}")
    if dead:
        result.notes.append("DLQ headers: " + ", ".join(sorted({k for k, _ in dead[0]})))
    if len(with_headers) != len(dead):
        result.error = f"{len(dead) - len(with_headers)} DLQ records without error headers"
    audit.close()
    clinic.close()
    return result


def _dlq_records(
    bootstrap: str, topic: str, marker: str, expected: int, timeout_s: float = 60.0
) -> list[list[tuple[str, bytes]]]:
    """The headers of the DLQ records whose key is ``marker`` (the device the poison was keyed by)."""
    reader = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    found: list[list[tuple[str, bytes]]] = []
    try:
        deadline = time.monotonic() + timeout_s
        assigned = False
        while time.monotonic() < deadline and len(found) < expected:
            if not assigned:
                parts = reader.partitions_for_topic(topic)
                if not parts:
                    time.sleep(0.5)
                    continue
                reader.assign([TopicPartition(topic, p) for p in parts])
                assigned = True
            for records in reader.poll(timeout_ms=500).values():
                for r in records:
                    if r.key == marker.encode():
                        found.append([(k, v) for k, v in (r.headers or [])])
    finally:
        reader.close()
    return found


CASES: dict[str, Callable[[Path, float], CaseResult]] = {}


def _on_platform(run: Callable[..., CaseResult], **kwargs: Any) -> Callable[[Path, float], CaseResult]:
    def case(workdir: Path, scale: float = 1.0) -> CaseResult:
        with platform_for(workdir) as platform:
            return run(platform, **{k: (v(scale) if callable(v) else v) for k, v in kwargs.items()})

    return case


CASES.update(
    {
        "R1": r1_broker_kill,
        "R2": r2_relay_kill,
        "R3": r3_consumer_kill_and_stop,
        "R4": r4_network_partition,
        "R4-netns": r4_in_namespace,
        "R5": r5_database_faults,
        "R6": _on_platform(r6_client_cuts, batches=lambda s: max(20, int(120 * s))),
        "R7": _on_platform(r7_poison, frames=lambda s: max(200, int(1000 * s))),
    }
)


def _r10(workdir: Path, scale: float = 1.0) -> CaseResult:
    from relearn.devtools.reliability.ingest_machine import r10_ingest_machine

    with platform_for(workdir) as platform:
        return r10_ingest_machine(platform, examples=max(5, int(50 * scale)))


CASES["R10"] = _r10


# -- R8 ---------------------------------------------------------------------------------------------------
class MemoryCgroup:
    """A memory-limited cgroup for one process: cgroup v2 (``memory.max``) where the memory controller is
    on the unified hierarchy, else cgroup v1 (``memory.limit_in_bytes``), as root."""

    def __init__(self, name: str, limit_bytes: int) -> None:
        v2_roots = [Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")]
        self.v2 = next(
            (r for r in v2_roots if "memory" in _read(r / "cgroup.controllers").split()),
            None,
        )
        if self.v2 is not None:
            self.path = self.v2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(OSError):
                (self.path / "memory.swap.max").write_text("0")
        else:
            self.path = Path("/sys/fs/cgroup/memory") / name
            self.path.mkdir(exist_ok=True)
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        self.limit_bytes = limit_bytes

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.v2 is not None else "memory.max_usage_in_bytes"
        with contextlib.suppress(OSError, ValueError):
            return int(_read(self.path / name) or 0)
        return 0

    def oom_kills(self) -> int:
        text = _read(self.path / ("memory.events" if self.v2 is not None else "memory.oom_control"))
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _metrics_completed(audit: Audit, stream: str) -> bool:
    from sqlalchemy import text

    with audit.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT payload FROM outbox_event WHERE type = 'device.stream-metrics-completed.v1'")
        ).all()
    return any(stream.encode() in bytes(r[0]) for r in rows)


def r8_memory_limit(
    workdir: Path, scale: float = 1.0, limit_mib: int = 512, minutes: float = 10.0
) -> CaseResult:
    """The gateway worker (relay + metrics processor) in a 512 MiB cgroup through a long 8-channel 2 kHz
    stream and its close; an OOM kill is restarted (as Kubernetes would) and counted."""
    minutes = max(1.0, minutes * scale)
    result = CaseResult(
        "R8", f"gateway worker under {limit_mib} MiB: {minutes:.0f} min 8-ch 2 kHz stream + close"
    )
    with platform_for(workdir, separate_workers=True) as platform:
        cgroup = MemoryCgroup(f"relearn-r8-{os.getpid()}", limit_mib * 1024 * 1024)
        try:
            cgroup.add(platform.processes["device-gateway-worker"].pid)
            ledger = Ledger()
            clinic = Clinic(platform, channels=8)
            audit = Audit(platform)
            stream = clinic.open_stream()
            from datetime import UTC, datetime

            start = datetime.now(UTC)
            url = f"{clinic.base}/ingest/frames"
            acked: set[tuple[str, int]] = set()
            restarts = 0

            def watch() -> None:
                nonlocal restarts
                proc = platform.processes["device-gateway-worker"]
                if proc.poll() is not None:
                    restarts += 1
                    platform.respawn("device-gateway-worker")
                    cgroup.add(platform.processes["device-gateway-worker"].pid)

            with httpx.Client(timeout=60.0) as http:
                per_request = 10
                for first in range(0, int(minutes * 60), per_request):
                    batch = [clinic.frame(stream, s, 2000, start) for s in range(first, first + per_request)]
                    got = send_frames(
                        http,
                        url,
                        clinic.device_headers,
                        batch,
                        ledger,
                        f"seq {first}",
                        deadline=time.monotonic() + 300,
                    )
                    acked.update(got or [])
                    watch()
                closed = http.post(f"{clinic.base}/streams/{stream}/close", headers=clinic.clinician)
                ledger.record(
                    "close", stream, OK if closed.status_code == 200 else FAILED, status=closed.status_code
                )
            t0 = time.monotonic()
            deadline = t0 + 900
            while time.monotonic() < deadline and not _metrics_completed(audit, stream):
                watch()
                time.sleep(1.0)
            done = _metrics_completed(audit, stream)
            _settle_now(result, ledger, audit, clinic, acked, [stream], None, timeout_s=300)
            result.recovery_s = time.monotonic() - t0
            peak = cgroup.peak_bytes() / 2**20
            kills = cgroup.oom_kills()
            result.notes.append(
                f"worker peak {peak:.0f} MiB of {limit_mib} MiB, {kills} OOM kills, {restarts} restarts; "
                f"whole-recording metrics {'completed' if done else 'NOT completed'}"
            )
            if kills or restarts or not done:
                result.error = f"OOM kills {kills}, restarts {restarts}, metrics completed {done}"
            audit.close()
            clinic.close()
        finally:
            with contextlib.suppress(Exception):
                platform.stop()
            cgroup.remove()
    return result


# -- R9 ---------------------------------------------------------------------------------------------------
def _rss_mib(pid: int) -> float:
    for line in _read(Path(f"/proc/{pid}/status")).splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def r9_slow_consumer(workdir: Path, scale: float = 1.0, minutes: float = 3.0) -> CaseResult:
    """The gateway worker (relay + metrics processor) made slow - SIGSTOPped 3 s of every 4 - for three
    minutes while the hub streams at twice the normal load (4 live streams): ingest must signal
    back-pressure (429 + Retry-After) rather than grow without bound, and memory stays flat."""
    seconds = max(30.0, minutes * 60 * scale)
    result = CaseResult("R9", f"slow consumer for {seconds:.0f} s at twice the normal load")
    env = {"INGEST_MAX_BACKLOG": "100"}  # 3 s stopped at 40 frames/s backs up 120 events
    with platform_for(workdir, separate_workers=True, extra_env=env) as platform:
        ledger = Ledger()
        clinic = Clinic(platform)
        audit = Audit(platform)
        streams = [clinic.open_stream() for _ in range(4)]  # twice R1's two live streams
        sender = FrameSender(clinic, ledger, streams, frames_per_s=10.0)
        sender.start()
        serve = platform.processes["device-gateway"].pid
        samples: list[tuple[float, float, float]] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            worker = platform.processes["device-gateway-worker"].pid
            platform.send_signal("device-gateway-worker", signal.SIGSTOP)
            time.sleep(3.0)
            platform.send_signal("device-gateway-worker", signal.SIGCONT)
            time.sleep(1.0)
            samples.append((time.monotonic() - t0, _rss_mib(serve), _rss_mib(worker)))
        healed = time.monotonic()
        _settle(result, ledger, audit, clinic, sender, streams)
        result.recovery_s = time.monotonic() - healed
        throttled = sum(1 for op in ledger.ops if op.status == 429)
        third = max(1, len(samples) // 3)
        first = max(s[1] + s[2] for s in samples[:third])
        last = max(s[1] + s[2] for s in samples[-third:])
        result.notes.append(
            f"{throttled} answers 429 with Retry-After; gateway RSS (serve + worker) peak "
            f"{first:.0f} MiB in the first third, {last:.0f} MiB in the last"
        )
        if throttled == 0:
            result.error = "no back-pressure signalled"
        if last > first * 1.25 + 30:
            result.error = f"memory grew: {first:.0f} -> {last:.0f} MiB"
        audit.close()
        clinic.close()
    return result


CASES["R8"] = r8_memory_limit
CASES["R9"] = r9_slow_consumer
