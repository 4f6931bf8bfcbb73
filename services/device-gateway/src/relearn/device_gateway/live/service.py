"""The live hub: display updates of every open stream, fanned out to biofeedback subscribers.

The ingest path calls :meth:`LiveHub.publish` after each committed frame (from a worker thread or from the
event loop). The hub keeps one display processor per stream (`domain.EmgDisplay` / `domain.CopDisplay`,
filter state only), turns the frame into display updates at the display rate and, when someone watches the
stream or its session, serialises ONE message per frame and offers it to every subscriber's bounded
asyncio queue on that subscriber's event loop (`loop.call_soon_threadsafe` from other threads). A slow
subscriber loses its oldest messages, never blocks ingest, and has its drops counted.

Message (one per frame per stream; a 0.2 s frame at 25 updates/s carries 5 updates, batched to keep the
per-message overhead low):

    {"type": "emg" | "cop", "stream": id, "session": Encounter id | null, "sequence": frame sequence,
     "t": ISO time of the newest update, "sentAt": server epoch ms, "values": {...newest update...},
     "updates": [{"t": ISO time, "values": {...}}, ...oldest first, the newest last...],
     "targets": {"emgPercentMvcMin"?: n, "swayRadiusMaxCm"?: n}}

EMG values: `{<channel>: {"envelope", "unit", "percentMvc"?, "aboveThreshold"?}}` (%MVC when the binding
gives the channel's MVC envelope; `aboveThreshold` = percentMvc >= targets.emgPercentMvcMin). COP values:
`{"x", "y", "unit": "cm", "radius", "insideLimit"?, "calibrating"?}` relative to the reference position;
`insideLimit` = radius <= targets.swayRadiusMaxCm; x/y/radius are null with `"loaded": false` when nobody
stood on the board during that update.

A stream's state goes when it is closed (:meth:`LiveHub.close_stream`, which also tells its subscribers
`{"type": "closed", ...}`) or after `idle_timeout_s` without frames.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from relearn.device_gateway.live.domain import (
    DEFAULT_DISPLAY_RATE_HZ,
    CopDisplay,
    CopUpdates,
    EmgDisplay,
    EmgUpdates,
    check_display_rate,
    display_for,
)
from relearn.device_gateway.signals.frames import SensorFrame, StreamType

if TYPE_CHECKING:
    from relearn.device_gateway.streams.repository import StreamInfo as Binding

DEFAULT_QUEUE_SIZE = 64
"""Messages a subscriber may fall behind (about 13 s of 0.2 s frames) before its oldest are dropped."""

DEFAULT_IDLE_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class Targets:
    """The binding's biofeedback targets."""

    emg_percent_mvc_min: float | None = None
    sway_radius_max_cm: float | None = None

    def to_json(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.emg_percent_mvc_min is not None:
            out["emgPercentMvcMin"] = self.emg_percent_mvc_min
        if self.sway_radius_max_cm is not None:
            out["swayRadiusMaxCm"] = self.sway_radius_max_cm
        return out


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the hub needs to know about a stream binding (built by the ingest path for each publish)."""

    id: str
    device: str
    patient: str
    session: str | None
    stream_type: StreamType
    mvc: Mapping[str, float] | None = None  # MVC envelope per channel, in the channel's unit
    targets: Targets = field(default_factory=Targets)

    @classmethod
    def from_binding(cls, binding: Binding) -> StreamInfo:
        """From the ingest path's binding snapshot, directly (no JSON round trip per frame)."""
        targets = binding.targets or {}
        return cls(
            id=binding.id,
            device=binding.device,
            patient=binding.patient,
            session=binding.session,
            stream_type=binding.stream_type,
            mvc={str(k): float(v) for k, v in binding.mvc.items()} if binding.mvc else None,
            targets=Targets(
                emg_percent_mvc_min=targets.get("emgPercentMvcMin"),
                sway_radius_max_cm=targets.get("swayRadiusMaxCm"),
            ),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StreamInfo:
        """From a binding (`id`) or a raw frame event's data (`stream`), camelCase as on the wire."""
        targets = data.get("targets") or {}
        return cls(
            id=str(data["id"] if "id" in data else data["stream"]),
            device=str(data["device"]),
            patient=str(data["patient"]),
            session=data.get("session"),
            stream_type=StreamType(data["streamType"]),
            mvc={str(k): float(v) for k, v in (data.get("mvc") or {}).items()} or None,
            targets=Targets(
                emg_percent_mvc_min=targets.get("emgPercentMvcMin"),
                sway_radius_max_cm=targets.get("swayRadiusMaxCm"),
            ),
        )


class Subscription:
    """One subscriber: a bounded queue of JSON text messages on the subscriber's event loop.

    Use as a context manager (or call :meth:`close`) so the hub forgets it.
    """

    def __init__(
        self,
        hub: LiveHub,
        loop: asyncio.AbstractEventLoop,
        *,
        stream: str | None,
        session: str | None,
        patient: str | None,
        max_queued: int,
    ) -> None:
        self.hub = hub
        self.loop = loop
        self.stream = stream
        self.session = session
        self.patient = patient  # only messages about this patient's streams (patient-scoped tokens)
        self.queue: asyncio.Queue[str] = asyncio.Queue(max_queued)
        self.dropped = 0
        self.closed = False

    def offer(self, text: str) -> None:
        """Queue a message, dropping the oldest when full. Runs on `loop`."""
        if self.closed:
            return
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
            self.hub.count_drop()
        self.queue.put_nowait(text)

    async def get(self) -> str:
        return await self.queue.get()

    def close(self) -> None:
        self.closed = True
        self.hub.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class _StreamState:
    info: StreamInfo
    display: EmgDisplay | CopDisplay
    last_seen: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class LiveHub:
    """Thread-safe: `publish` from any thread; `subscribe` from the subscriber's running event loop."""

    def __init__(
        self,
        *,
        display_rate_hz: float = DEFAULT_DISPLAY_RATE_HZ,
        max_queued: int = DEFAULT_QUEUE_SIZE,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.display_rate_hz = check_display_rate(display_rate_hz)
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.max_queued = max_queued
        self.idle_timeout_s = idle_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: dict[str, _StreamState] = {}
        self._by_stream: dict[str, set[Subscription]] = {}
        self._by_session: dict[str, set[Subscription]] = {}
        self._next_sweep = clock() + idle_timeout_s
        self._drops = 0

    # -- subscribers ------------------------------------------------------------------------------------

    def subscribe(
        self,
        *,
        stream: str | None = None,
        session: str | None = None,
        patient: str | None = None,
        max_queued: int | None = None,
    ) -> Subscription:
        """Watch one stream or one session (exactly one of them); call from the subscriber's event loop.

        With `patient`, only messages about that patient's streams are delivered.
        """
        if (stream is None) == (session is None):
            raise ValueError("subscribe to exactly one of stream or session")
        sub = Subscription(
            self,
            asyncio.get_running_loop(),
            stream=stream,
            session=session,
            patient=patient,
            max_queued=max_queued or self.max_queued,
        )
        with self._lock:
            if stream is not None:
                self._by_stream.setdefault(stream, set()).add(sub)
            else:
                assert session is not None
                self._by_session.setdefault(session, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            for index, key in ((self._by_stream, sub.stream), (self._by_session, sub.session)):
                if key is not None and key in index:
                    index[key].discard(sub)
                    if not index[key]:
                        del index[key]

    def count_drop(self) -> None:
        self._drops += 1  # from event loops; a statistic, exactness under races does not matter

    def stats(self) -> dict[str, int]:
        with self._lock:
            subscribers = sum(len(s) for s in self._by_stream.values()) + sum(
                len(s) for s in self._by_session.values()
            )
            return {"streams": len(self._streams), "subscribers": subscribers, "dropped": self._drops}

    def _subscribers(self, info: StreamInfo) -> list[Subscription]:
        with self._lock:
            subs = list(self._by_stream.get(info.id, ()))
            if info.session is not None:
                subs.extend(self._by_session.get(info.session, ()))
        return [s for s in subs if s.patient is None or s.patient == info.patient]

    # -- ingest side --------------------------------------------------------------------------------------

    def publish(self, stream: StreamInfo, frame: SensorFrame) -> None:
        """Process one committed frame of `stream` and send its display updates to the watchers."""
        now = self._clock()
        state = self._state(stream, now)
        with state.lock:
            state.info = stream
            updates = state.display.feed(frame)
            if len(updates) == 0:
                return
            subs = self._subscribers(stream)
            if not subs:
                return
            text = json.dumps(_message(stream, frame.sequence, updates), separators=(",", ":"))
            self._deliver(subs, text)

    def close_stream(self, stream_id: str) -> None:
        """Forget a closed stream's filter state and tell its watchers."""
        with self._lock:
            state = self._streams.pop(stream_id, None)
        if state is None:
            return
        info = state.info
        text = json.dumps(
            {"type": "closed", "stream": info.id, "session": info.session, "sentAt": _epoch_ms()},
            separators=(",", ":"),
        )
        self._deliver(self._subscribers(info), text)

    def sweep(self, now: float | None = None) -> list[str]:
        """Drop the state of streams idle for longer than `idle_timeout_s`; returns their ids."""
        now = self._clock() if now is None else now
        with self._lock:
            idle = [k for k, s in self._streams.items() if now - s.last_seen > self.idle_timeout_s]
            for key in idle:
                del self._streams[key]
            self._next_sweep = now + self.idle_timeout_s / 4
        return idle

    def _state(self, info: StreamInfo, now: float) -> _StreamState:
        if now >= self._next_sweep:
            self.sweep(now)
        with self._lock:
            state = self._streams.get(info.id)
            if state is None or state.display.stream_type is not info.stream_type:
                display = display_for(info.stream_type, display_rate_hz=self.display_rate_hz)
                state = _StreamState(info, display, now)
                self._streams[info.id] = state
            state.last_seen = now
            return state

    def _deliver(self, subs: list[Subscription], text: str) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for sub in subs:
            if sub.loop is running:
                sub.offer(text)
                continue
            try:
                sub.loop.call_soon_threadsafe(sub.offer, text)
            except RuntimeError:  # that subscriber's loop is closed: it is gone
                sub.closed = True
                self.unsubscribe(sub)


# -- messages -------------------------------------------------------------------------------------------


def _epoch_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso_times(origin: datetime, seconds: np.ndarray[Any, Any]) -> list[str]:
    base = origin.astimezone(UTC)
    return [
        (base + timedelta(seconds=float(s))).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        for s in seconds
    ]


def _sig(value: float) -> float:
    return float(f"{value:.6g}")


def _emg_values(info: StreamInfo, updates: EmgUpdates) -> list[dict[str, Any]]:
    mvc = info.mvc or {}
    threshold = info.targets.emg_percent_mvc_min
    rows: list[dict[str, Any]] = [{} for _ in range(len(updates))]
    for c, (name, unit) in enumerate(zip(updates.channels, updates.units, strict=True)):
        column = updates.envelope[:, c].tolist()
        reference = mvc.get(name)
        percent = (
            np.round(100.0 * updates.envelope[:, c] / reference, 2).tolist()
            if reference is not None and reference > 0
            else None
        )
        for i, row in enumerate(rows):
            value: dict[str, Any] = {"envelope": _sig(column[i]), "unit": unit}
            if percent is not None:
                value["percentMvc"] = percent[i]
                if threshold is not None:
                    value["aboveThreshold"] = percent[i] >= threshold
            row[name] = value
    return rows


def _cop_values(info: StreamInfo, updates: CopUpdates) -> list[dict[str, Any]]:
    limit = info.targets.sway_radius_max_cm
    xs = np.round(updates.x, 3).tolist()
    ys = np.round(updates.y, 3).tolist()
    radii = np.round(updates.radius, 3).tolist()
    rows: list[dict[str, Any]] = []
    for x, y, r, calibrating in zip(xs, ys, radii, updates.calibrating.tolist(), strict=True):
        row: dict[str, Any]
        if math.isnan(r):
            row = {"x": None, "y": None, "unit": "cm", "radius": None, "loaded": False}
        else:
            row = {"x": x, "y": y, "unit": "cm", "radius": r}
            if limit is not None:
                row["insideLimit"] = r <= limit
        if calibrating:
            row["calibrating"] = True
        rows.append(row)
    return rows


def _message(info: StreamInfo, sequence: int, updates: EmgUpdates | CopUpdates) -> dict[str, Any]:
    if isinstance(updates, EmgUpdates):
        kind, values = "emg", _emg_values(info, updates)
    else:
        kind, values = "cop", _cop_values(info, updates)
    times = _iso_times(updates.origin, updates.seconds)
    return {
        "type": kind,
        "stream": info.id,
        "session": info.session,
        "sequence": sequence,
        "t": times[-1],
        "sentAt": _epoch_ms(),
        "values": values[-1],
        "updates": [{"t": t, "values": v} for t, v in zip(times, values, strict=True)],
        "targets": info.targets.to_json(),
    }
