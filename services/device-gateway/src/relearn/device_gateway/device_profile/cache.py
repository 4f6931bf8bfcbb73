"""Device specs by id for the ingest path, read from the FHIR store at most once per few seconds."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlmodel import Session

from relearn.device_gateway.device_profile.reading import device_spec
from relearn.device_gateway.device_profile.repository import read_device
from relearn.device_gateway.device_profile.spec import DeviceSpec


class DeviceSpecCache:
    """Device specs by id, read from the FHIR store at most once per ``ttl_s`` per device (ingest checks many
    frames per second against the same few devices). ``invalidate`` drops an entry when a Device is written
    in this process (see :func:`device_written_hook`); other processes see a change within ``ttl_s``.
    Thread-safe; holds at most ``max_entries`` devices (least recently read dropped first)."""

    def __init__(
        self, ttl_s: float = 5.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, DeviceSpec | None]] = OrderedDict()

    def get(self, session: Session, device_id: str) -> DeviceSpec | None:
        """The spec of ``device_id`` (None when the Device is unknown or deleted)."""
        now = self._clock()
        with self._lock:
            hit = self._entries.get(device_id)
            if hit is not None and now - hit[0] < self.ttl_s:
                self._entries.move_to_end(device_id)
                return hit[1]
        resource = read_device(session, device_id)
        spec = device_spec(resource) if resource is not None else None
        with self._lock:
            self._entries[device_id] = (now, spec)
            self._entries.move_to_end(device_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return spec

    def invalidate(self, device_id: str | None = None) -> None:
        """Forget ``device_id`` (or every device)."""
        with self._lock:
            if device_id is None:
                self._entries.clear()
            else:
                self._entries.pop(device_id, None)
