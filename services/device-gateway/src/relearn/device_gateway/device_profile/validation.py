"""Checking a Device on write: the FHIR store's validator (400, each element that breaks the convention)
and the write hook (422 for a parent that is not a clinic gateway; drops the Device from the spec cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from relearn.device_gateway.device_profile.cache import DeviceSpecCache
from relearn.device_gateway.device_profile.codes import DeviceKind
from relearn.device_gateway.device_profile.reading import device_spec, read_spec
from relearn.device_gateway.device_profile.repository import read_device
from relearn.shared.fhir import FhirStore, InvalidResource, ResourceChange, UnprocessableEntity, WriteHook


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
