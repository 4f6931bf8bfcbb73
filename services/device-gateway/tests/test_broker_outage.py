"""A broker outage: the gateway keeps acknowledging frames, and every acknowledged frame reaches the raw topic
once, in order, when the broker is back (the frames wait in the outbox, not in memory)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from relearn.devtools.apps import wait_for
from relearn.devtools.broker import TansuBroker
from relearn.shared.events import AUDIT_EVENTS, DEVICE_RAW_EMG, OutboxEvent

if TYPE_CHECKING:  # conftest is pytest's to import; its classes are only named here for the types
    from conftest import Gateway, Kit


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A broker of this module's own, so stopping it disturbs no other test."""
    b = TansuBroker(log_dir=tmp_path_factory.mktemp("outage-broker"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _unpublished(gateway: Gateway) -> int:
    query = (
        select(func.count())
        .select_from(OutboxEvent)
        .where(OutboxEvent.published_at.is_(None))  # type: ignore[union-attr]
        .where(OutboxEvent.topic != AUDIT_EVENTS)  # frames, not the requests' audit
    )
    with Session(gateway.engine) as s:
        return int(s.scalar(query) or 0)


def test_frames_acknowledged_while_the_broker_is_down_arrive_once_when_it_returns(
    make_gateway: Callable[[str], Gateway], own_broker: TansuBroker, kit: Kit
) -> None:
    gateway = make_gateway(own_broker.bootstrap)
    device = gateway.register_device()
    stream = gateway.open_stream(device, "emg", session=kit.uid("enc"))["id"]
    _, values = kit.load_bmc_emg()
    frames = kit.frames_from(
        values[:2000],
        device=device,
        stream=stream,
        stream_type="emg",
        rate=1000.0,
        channels=[{"name": "biceps", "unit": "V"}],
        frame_len=100,
    )
    before, during = frames[:5], frames[5:]
    assert all(r["status"] == "accepted" for r in gateway.send_all(before, device, batch=5))
    wait_for(lambda: _unpublished(gateway) == 0, what="the first frames to be published")

    own_broker.stop()
    results = gateway.send_all(during, device, batch=5)
    assert [r["status"] for r in results] == ["accepted"] * len(during), (
        "ingest must not depend on the broker"
    )
    assert _unpublished(gateway) == len(during), "acknowledged frames wait in the outbox"

    own_broker.start()  # an empty broker (Tansu keeps nothing): what was published before is gone with it
    events = kit.raw_events(gateway.bootstrap, DEVICE_RAW_EMG, stream, expected=len(during), timeout_s=90)
    assert [e.data["frame"]["sequence"] for e in events] == [f["sequence"] for f in during]
    assert sum(len(e.data["frame"]["samples"]) for e in events) == sum(len(f["samples"]) for f in during)
    wait_for(lambda: _unpublished(gateway) == 0, what="the outbox to drain")
