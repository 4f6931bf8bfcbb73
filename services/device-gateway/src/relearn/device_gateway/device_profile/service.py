"""The Device convention's use cases: the spec cache of the ingest path (:class:`DeviceSpecCache`, specs by
device id read from the FHIR store at most once per few seconds), and checking a Device on write: the FHIR
store's validator (400, each element that breaks the convention) and the write hook (422 for a parent that is
not a clinic gateway; drops the Device from the spec cache)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from relearn.device_gateway.device_profile.domain.codes import DeviceKind
from relearn.device_gateway.device_profile.domain.spec import DeviceSpec
from relearn.device_gateway.device_profile.mapper import device_spec, read_spec
from relearn.device_gateway.device_profile.repository import read_device
from relearn.shared.fhir import FhirStore, InvalidResource, ResourceChange, UnprocessableEntity, WriteHook


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


def check_device(device: dict[str, Any]) -> None:
    """The FHIR store's validator for Device: 400 OperationOutcome with one issue per element that breaks
    the convention (only elements that use the Relearn CodeSystems, and ``parent``, are checked)."""
    _, issues = read_spec(device)
    if issues:
        raise InvalidResource(issues[0].diagnostics, issues=issues)


def device_written_hook(specs: DeviceSpecCache) -> Callable[[FhirStore], WriteHook]:
    """A FHIR store write hook (``fhir_api(..., hooks=[...])``) for Device writes: refuses (422
    ``Device.parent``) a parent that is registered as something other than a clinic gateway, and drops the
    written Device from ``specs``. Runs in the write's transaction, so a refusal stores nothing."""

    def make(store: FhirStore) -> WriteHook:
        def hook(session: Session, change: ResourceChange) -> None:
            if change.resource_type != "Device":
                return
            specs.invalidate(change.stored.id)
            if change.resource is None:
                return
            parent_id = device_spec(change.resource).parent
            parent = read_device(session, parent_id) if parent_id is not None else None
            if parent is None:
                return  # not registered yet: a hub may be registered after its sensors
            kind = device_spec(parent).kind
            if kind not in (None, DeviceKind.CLINIC_GATEWAY):
                raise UnprocessableEntity(
                    f"Device.parent: Device/{parent_id} is a {kind}, not a clinic-gateway",
                    expression="Device.parent",
                )

        return hook

    return make
