from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from relearn.device_gateway.live.service import LiveHub, StreamInfo, Subscription, Targets
from relearn.device_gateway.signals.frames import SensorFrame, StreamType
from relearn.device_gateway.streams.repository import StreamInfo as Binding

Split = Callable[..., list[SensorFrame]]
EMG_CHANNELS = [{"name": "vm", "unit": "mV"}, {"name": "bf", "unit": "mV"}]
FORCE_PLATE = [
    {"name": n, "unit": "N" if n.startswith("F") else "N.m"} for n in ("Fx", "Fy", "Fz", "Mx", "My", "Mz")
]


def emg_stream(
    stream: str = "emg-1", patient: str = "p1", session: str | None = "enc-1", **kw: Any
) -> StreamInfo:
    return StreamInfo(stream, "armband-7", patient, session, StreamType.EMG, **kw)


def emg_frames(
    split: Split, stream: str = "emg-1", seconds: float = 1.0, fs: float = 1000.0
) -> list[SensorFrame]:
    signal = np.random.default_rng(0).normal(size=(round(seconds * fs), 2))
    return split(signal, [round(0.2 * fs)], fs=fs, channels=EMG_CHANNELS, stream_id=stream)


def drain(sub: Subscription) -> list[dict[str, Any]]:
    out = []
    while not sub.queue.empty():
        out.append(json.loads(sub.queue.get_nowait()))
    return out


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_updates_fan_out_to_stream_and_session_watchers(split: Split) -> None:
    hub = LiveHub()
    info = emg_stream()
    other = emg_stream("emg-2", session="enc-2")
    with (
        hub.subscribe(stream="emg-1") as by_stream,
        hub.subscribe(stream="emg-1") as second,
        hub.subscribe(session="enc-1") as by_session,
        hub.subscribe(stream="emg-2") as unrelated,
    ):
        for frame in emg_frames(split):
            hub.publish(info, frame)
        await settle()
        got = drain(by_stream)
        assert [m["sequence"] for m in got] == [0, 1, 2, 3, 4]
        assert got == drain(second) == drain(by_session)
        assert drain(unrelated) == []
        message = got[0]
        assert message["type"] == "emg" and message["stream"] == "emg-1" and message["session"] == "enc-1"
        assert len(message["updates"]) == 5  # 0.2 s at 25 updates/s
        assert message["values"] == message["updates"][-1]["values"]
        assert message["t"] == message["updates"][-1]["t"] and message["t"].endswith("Z")
        assert set(message["values"]) == {"vm", "bf"}
        assert message["values"]["vm"]["unit"] == "mV" and message["values"]["vm"]["envelope"] >= 0
        assert "percentMvc" not in message["values"]["vm"]

        for frame in emg_frames(split, "emg-2"):
            hub.publish(other, frame)
        await settle()
        assert len(drain(unrelated)) == 5
        assert drain(by_session) == []
    assert hub.stats()["subscribers"] == 0


async def test_publish_from_a_worker_thread_reaches_the_loop(split: Split) -> None:
    hub = LiveHub()
    with hub.subscribe(stream="emg-1") as sub:
        worker = threading.Thread(target=lambda: [hub.publish(emg_stream(), f) for f in emg_frames(split)])
        worker.start()
        worker.join()
        messages = [json.loads(await asyncio.wait_for(sub.get(), 5)) for _ in range(5)]
    assert [m["sequence"] for m in messages] == [0, 1, 2, 3, 4]


async def test_percent_mvc_and_threshold(split: Split) -> None:
    hub = LiveHub()
    info = emg_stream(mvc={"vm": 0.5}, targets=Targets(emg_percent_mvc_min=40.0))
    rng = np.random.default_rng(4)
    rest, contraction = rng.normal(0, 0.01, (500, 2)), rng.normal(0, 0.5, (500, 2))
    frames = split(np.vstack([rest, contraction]), [200], fs=1000.0, channels=EMG_CHANNELS, stream_id="emg-1")
    with hub.subscribe(stream="emg-1") as sub:
        for frame in frames:
            hub.publish(info, frame)
        await settle()
        updates = [u for m in drain(sub) for u in m["updates"]]
    assert len(updates) == 25
    for update in updates:
        vm, bf = update["values"]["vm"], update["values"]["bf"]
        assert vm["percentMvc"] == pytest.approx(100 * vm["envelope"] / 0.5, abs=0.01)
        assert vm["aboveThreshold"] == (vm["percentMvc"] >= 40.0)
        assert "percentMvc" not in bf and "aboveThreshold" not in bf  # no MVC for that channel
    assert not any(u["values"]["vm"]["aboveThreshold"] for u in updates[:12])  # resting
    assert all(u["values"]["vm"]["aboveThreshold"] for u in updates[-5:])  # contracting


async def test_cop_messages_say_inside_or_outside_the_sway_limit(bds: np.ndarray, split: Split) -> None:
    hub = LiveHub()
    info = StreamInfo(
        "plate-1", "plate", "p1", None, StreamType.FORCE_PLATE, targets=Targets(sway_radius_max_cm=0.5)
    )
    frames = split(bds[:3000, 1:7], [20], fs=100.0, channels=FORCE_PLATE, stream_type="force-plate")
    with hub.subscribe(stream="plate-1", max_queued=1000) as sub:
        for frame in frames:
            hub.publish(info, frame)
        await settle()
        messages = drain(sub)
    assert {m["type"] for m in messages} == {"cop"}
    assert messages[0]["targets"] == {"swayRadiusMaxCm": 0.5}
    updates = [u["values"] for m in messages for u in m["updates"]]
    assert len(updates) == 750  # 30 s at 25/s
    # The file's own COP columns, relative to the first second, at the same 40 ms buckets.
    x = bds[:3000, 7] - bds[:100, 7].mean()
    y = bds[:3000, 8] - bds[:100, 8].mean()
    radius = np.hypot(x.reshape(-1, 4).mean(axis=1), y.reshape(-1, 4).mean(axis=1))
    settled = slice(25, None)  # after the reference second
    got = np.array([u["radius"] for u in updates])
    np.testing.assert_allclose(got[settled], radius[settled], atol=2e-3)
    inside = np.array([u["insideLimit"] for u in updates])
    assert inside.tolist() == (got <= 0.5).tolist()
    clear = np.abs(radius - 0.5) > 2e-3  # not on the limit within the tolerance above
    clear[:25] = False
    assert inside[clear].tolist() == (radius[clear] <= 0.5).tolist()
    assert inside.any() and not inside.all()
    assert all(u["unit"] == "cm" and u.get("calibrating") for u in updates[:25])
    assert not any("calibrating" in u for u in updates[25:])


async def test_unloaded_plate_reports_no_position(split: Split) -> None:
    hub = LiveHub()
    info = StreamInfo("plate-1", "plate", "p1", None, StreamType.FORCE_PLATE)
    standing = np.tile([0, 0, 600.0, 3.0, -6.0, 0], (100, 1))
    empty = np.zeros((20, 6))
    frames = split(
        np.vstack([standing, empty]), [20], fs=100.0, channels=FORCE_PLATE, stream_type="force-plate"
    )
    with hub.subscribe(stream="plate-1") as sub:
        for frame in frames:
            hub.publish(info, frame)
        await settle()
        messages = drain(sub)
    assert messages[0]["values"] == {"x": 0.0, "y": 0.0, "unit": "cm", "radius": 0.0, "calibrating": True}
    assert messages[-1]["values"] == {"x": None, "y": None, "unit": "cm", "radius": None, "loaded": False}


async def test_a_slow_subscriber_loses_its_oldest_messages(split: Split) -> None:
    hub = LiveHub(max_queued=3)
    with hub.subscribe(stream="emg-1") as slow, hub.subscribe(stream="emg-1", max_queued=100) as fast:
        for frame in emg_frames(split, seconds=2.0):
            hub.publish(emg_stream(), frame)
        await settle()
        assert [m["sequence"] for m in drain(slow)] == [7, 8, 9]
        assert slow.dropped == 7
        assert len(drain(fast)) == 10 and fast.dropped == 0
        assert hub.stats()["dropped"] == 7


async def test_patient_filtered_session_watcher_sees_only_that_patient(split: Split) -> None:
    hub = LiveHub()
    with hub.subscribe(session="enc-1", patient="p1") as sub:
        for a, b in zip(emg_frames(split), emg_frames(split, "emg-x"), strict=True):
            hub.publish(emg_stream(), a)
            hub.publish(emg_stream("emg-x", patient="p2"), b)
        await settle()
        assert {m["stream"] for m in drain(sub)} == {"emg-1"}


async def test_closing_a_stream_tells_watchers_and_forgets_its_state(split: Split) -> None:
    now = [0.0]
    hub = LiveHub(idle_timeout_s=60, clock=lambda: now[0])
    frames = emg_frames(split)
    with hub.subscribe(session="enc-1") as sub:
        hub.publish(emg_stream(), frames[0])
        hub.publish(emg_stream("emg-2"), frames[0])
        assert hub.stats()["streams"] == 2
        hub.close_stream("emg-1")
        await settle()
        messages = drain(sub)
        assert messages[-1]["type"] == "closed" and messages[-1]["stream"] == "emg-1"
        assert hub.stats()["streams"] == 1
        now[0] = 61.0
        assert hub.sweep() == ["emg-2"]
        assert hub.stats()["streams"] == 0
        # After a restart of its state the stream starts afresh (time origin = the next frame).
        hub.publish(emg_stream("emg-2"), frames[1])
        await settle()
        assert drain(sub)[-1]["t"] == "2026-03-02T09:30:00.399Z"


def test_subscribing_needs_exactly_one_target() -> None:
    async def attempt() -> None:
        LiveHub().subscribe(stream="a", session="b")

    with pytest.raises(ValueError, match="exactly one"):
        asyncio.run(attempt())


@pytest.mark.parametrize(
    ("mvc", "targets"),
    [
        ({"vm": 0.5, "bf": 2}, {"emgPercentMvcMin": 40.0, "swayRadiusMaxCm": 1.5}),
        (None, None),
        ({}, {}),
    ],
)
def test_the_hub_reads_a_binding_as_its_wire_form_says(
    mvc: dict[str, float] | None, targets: dict[str, float] | None
) -> None:
    binding = Binding(
        id="emg-1",
        device="armband-7",
        stream_type=StreamType.EMG,
        patient="p1",
        session="enc-1",
        protocol={"task": "knee-extension"},
        mvc=mvc,
        targets=targets,
        status="open",
        origin=datetime(2026, 3, 2, 9, 30, tzinfo=UTC),
        layout=None,
    )
    assert StreamInfo.from_binding(binding) == StreamInfo.from_json(binding.to_json())
