"""The clinic's devices in the device gateway: FHIR Devices, stream bindings, frames pushed by the hub.

The clinic hub and the sensors it carries are FHIR Devices (``POST /fhir/Device``); each recording gets a
stream binding (``POST /streams``) bound to the patient and the session's Encounter, the hub pushes it as
1-second frames with its device credentials (``POST /ingest/frames``) and the clinic closes the stream, after
which the gateway computes the whole-recording metrics.
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from relearn.devtools.journey.client import Api, JourneyError, iso
from relearn.devtools.journey.recordings import Recording
from relearn.shared.fhir import CANONICAL_URL

HUB_ID = "relearn-dev-hub"  # the device id `device-gateway-dev` is registered with (dev-clients.json)
SID_JOURNEY_DEVICE = f"{CANONICAL_URL}/sid/journey-device"
FRAMES_PER_REQUEST = 20
# The sensors the hub carries: (role, name, model number).
SENSORS = (
    ("emg", "4-channel surface EMG, right thigh", "EMG-4"),
    ("balance", "Force plate (forces and moments)", "BP-400"),
)


def frames(recording: Recording, device: str, stream: str, start: datetime) -> list[dict[str, Any]]:
    """The recording as 1-second SensorFrames (camelCase wire JSON), numbered from 0."""
    per_frame = int(recording.rate_hz)
    return [
        {
            "deviceId": device,
            "streamType": recording.stream_type,
            "streamId": stream,
            "sequence": seq,
            "startTime": iso(start + timedelta(seconds=i / recording.rate_hz)),
            "samplingRateHz": recording.rate_hz,
            "channels": [{"name": n, "unit": u} for n, u in recording.channels],
            "samples": recording.rows[i : i + per_frame],
        }
        for seq, i in enumerate(range(0, len(recording.rows), per_frame))
    ]


class Gateway:
    """One patient's devices and recordings in the device gateway."""

    def __init__(self, api: Api, patient: str) -> None:
        self.api = api
        self.patient = patient
        self.devices: dict[str, str] = {}  # role (hub, emg, balance) -> Device id

    @property
    def _base(self) -> str:
        return self.api.urls.device_gateway

    def ingests(self) -> bool:
        """Whether the running gateway takes stream bindings and frames (its OpenAPI lists both)."""
        with contextlib.suppress(httpx.HTTPError):
            spec = self.api.http.get(f"{self._base}/openapi.json").json()
            return "/ingest/frames" in spec.get("paths", {}) and "/streams" in spec.get("paths", {})
        return False

    def _device(self, role: str, body: dict[str, Any], id: str | None = None) -> str:
        resource = {
            "resourceType": "Device",
            "identifier": [{"system": SID_JOURNEY_DEVICE, "value": f"{self.patient}-{role}"}],
            "status": "active",
            **body,
        }
        headers = {**self.api.clinician, "Content-Type": "application/fhir+json"}
        url = f"{self.api.urls.fhir_base}/Device"
        if id is not None:  # the hub: at the id its device client was registered with
            resource["id"] = id
        created = self.api.call(
            "POST" if id is None else "PUT",
            url if id is None else f"{url}/{id}",
            (200, 201),
            f"the {role} Device",
            json=resource,
            headers=headers,
        )
        return str(created["id"])

    def register(self, role: str, body: dict[str, Any]) -> str:
        """One more Device for ``role`` (``body``: the Device's elements besides identifier and status)."""
        self.devices[role] = self._device(role, body)
        return self.devices[role]

    def register_devices(self) -> None:
        """The clinic hub and the two sensors it carries, as FHIR Devices (POST /fhir/Device).

        The hub is ``Device/relearn-dev-hub``: the development issuer binds the hub's client to that id,
        so its token can only claim it.
        """
        hub = self._device(
            "hub",
            {
                "deviceName": [{"name": "Clinic gateway, room 2", "type": "user-friendly-name"}],
                "manufacturer": "Relearn",
            },
            id=HUB_ID,
        )
        self.devices["hub"] = hub
        for role, name, model in SENSORS:
            self.devices[role] = self._device(
                role,
                {
                    "deviceName": [{"name": name, "type": "user-friendly-name"}],
                    "modelNumber": model,
                    "parent": {"reference": f"Device/{hub}"},
                },
            )

    def stream(
        self,
        role: str,
        recording: Recording,
        *,
        session: str,
        protocol: dict[str, Any],
        start: datetime,
        targets: dict[str, float] | None = None,
        mvc: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Stream one recording of the ``role`` sensor in a session: bind, push, close; the closed binding."""
        binding = self.open_stream(
            role, recording, session=session, protocol=protocol, start=start, targets=targets, mvc=mvc
        )
        return self.close_stream(binding["id"])

    def open_stream(
        self,
        role: str,
        recording: Recording,
        *,
        session: str,
        protocol: dict[str, Any],
        start: datetime,
        targets: dict[str, float] | None = None,
        mvc: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """Bind a stream of the ``role`` sensor and push the recording, leaving it open; the binding."""
        body: dict[str, Any] = {
            "device": self.devices[role],
            "streamType": recording.stream_type,
            "patient": self.patient,
            "session": session,
            "protocol": protocol,
        }
        if targets is not None:
            body["targets"] = targets
        if mvc is not None:
            body["mvc"] = mvc
        clinician = self.api.clinician
        binding = self.api.call(
            "POST", f"{self._base}/streams", 201, f"a {role} stream", json=body, headers=clinician
        )
        self._push(role, frames(recording, self.devices[role], binding["id"], start))
        opened: dict[str, Any] = binding
        return opened

    def close_stream(self, stream: str) -> dict[str, Any]:
        """Close a stream: the gateway then computes its whole-recording metrics. The closed binding."""
        closed: dict[str, Any] = self.api.call(
            "POST",
            f"{self._base}/streams/{stream}/close",
            200,
            "closing a stream",
            headers=self.api.clinician,
        )
        return closed

    def windows(self, stream: str, offset: int = 0) -> dict[str, Any]:
        """The stream's 1 s window metrics as the gateway recorded them (``GET /streams/{id}/windows``): the
        window-level data behind the trial summaries on the FHIR surface."""
        found: dict[str, Any] = self.api.call(
            "GET",
            f"{self._base}/streams/{stream}/windows",
            200,
            "the stream's window metrics",
            params={"offset": offset},
            headers=self.api.clinician,
        )
        return found

    def _push(self, role: str, sent: list[dict[str, Any]]) -> None:
        """The hub pushes the frames, FRAMES_PER_REQUEST a request, waiting out back-pressure (429)."""
        headers = self.api.device_headers(self.devices["hub"])
        for k in range(0, len(sent), FRAMES_PER_REQUEST):
            batch = {"frames": sent[k : k + FRAMES_PER_REQUEST]}
            while True:
                resp = self.api.http.post(f"{self._base}/ingest/frames", json=batch, headers=headers)
                if resp.status_code != 429:
                    break
                time.sleep(min(float(resp.headers.get("Retry-After", "1")), 5.0))
            result = self.api.expect(resp, 200, f"{role} frames").json()
            refused = [r for r in result["results"] if r["status"] not in ("accepted", "duplicate")]
            if refused:
                raise JourneyError(f"frames not accepted: {refused}")
