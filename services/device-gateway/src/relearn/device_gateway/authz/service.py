"""Who may push frames for which device, and who may see or change stream bindings.

Device credentials: a device or a clinic hub holds a token with a ``device`` claim and
``system/Observation.write``. It may push frames for ``deviceId`` == its claim, or for a Device (FHIR, in this
service's store) whose ``parent`` is ``Device/<claim>`` (a sensor carried by the hub), and read the bindings
of those devices (``GET /streams/{id}``, to resume after a reconnect). Nothing else: every FHIR or domain
read and write with a device credential is 403 (:class:`Principal` grants it nothing), so a hub cannot
write clinical data, open or close bindings, or read other patients' data. A token without a device claim
cannot ingest.

Stream bindings are a clinician's act: a clinician's app or an EHR (``user/`` or ``system/``
``Observation.write``) opens and closes them, naming the patient and the session's Encounter; devices only
send frames to a binding that exists. ``Observation.read`` reads bindings; a ``patient/`` token reads only
its own patient's streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from relearn.device_gateway.device_profile.repository import read_device
from relearn.device_gateway.streams.repository import get_stream
from relearn.device_gateway.streams.tables import StreamRecord
from relearn.shared.auth import Permission, Principal
from relearn.shared.fhir import Forbidden, NotFound


def device_parent(device: dict[str, Any]) -> str | None:
    """The id of the Device's ``parent`` (``Device/<id>``), if it has one."""
    ref = (device.get("parent") or {}).get("reference")
    if isinstance(ref, str) and ref.startswith("Device/"):
        return ref.removeprefix("Device/").split("/_history/")[0]
    return None


def require_device_credentials(principal: Principal) -> str:
    """The device claim of an ingest token (403 without one, or without Observation write)."""
    if not principal.device:
        raise Forbidden("Ingest needs device credentials: a token with a 'device' claim")
    if not principal.may_ingest():
        raise Forbidden(
            f"Token scopes '{principal.raw_scope}' do not allow sending frames (Observation write)"
        )
    return principal.device


def may_push_for(session: Session, claim: str, device_id: str) -> bool:
    if device_id == claim:
        return True
    device = read_device(session, device_id)
    return device is not None and device_parent(device) == claim


def authorize_devices(session: Session, principal: Principal, device_ids: Iterable[str]) -> None:
    """403 unless the token may push frames for every one of ``device_ids``."""
    claim = require_device_credentials(principal)
    refused = sorted(d for d in set(device_ids) if not may_push_for(session, claim, d))
    if refused:
        raise Forbidden(
            f"Device/{claim} may not send frames for {', '.join(f'Device/{d}' for d in refused)} "
            "(only for itself or for devices whose parent it is)",
            expression="frames.deviceId",
        )


def require_stream_writer(principal: Principal, letter: Permission = "c") -> None:
    """Opening (``c``) and closing (``u``) bindings: user/ or system/ Observation.c / .u (v1 write)."""
    principal.require("Observation", letter)
    if principal.patient_restriction("Observation", letter) is not None:
        raise Forbidden(
            "Stream bindings are set up by clinicians and systems (user/ or system/ Observation.write)"
        )


def stream_reader_patient(principal: Principal, letter: Permission = "s") -> str | None:
    """For reads: the patient the caller is limited to (None = any); 403 without Observation ``s``
    (listing bindings) or ``r`` (one binding by id)."""
    principal.require("Observation", letter)
    return principal.patient_restriction("Observation", letter)


def readable_stream(session: Session, principal: Principal, stream_id: str) -> StreamRecord:
    """The binding if the caller may read it; 404 when unknown or outside the caller's patient."""
    row = get_stream(session, stream_id)
    if principal.device:
        require_device_credentials(principal)
        if row is None or not may_push_for(session, principal.device, row.device_id):
            raise NotFound(f"stream {stream_id} is not known")
        return row
    patient = stream_reader_patient(principal, "r")
    if row is None or (patient is not None and row.patient_id != patient):
        raise NotFound(f"stream {stream_id} is not known")
    return row
