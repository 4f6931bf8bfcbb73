"""Checking a sensor frame against the Device it comes from (the first frame of each stream, on ingest)."""

from __future__ import annotations

import math

from relearn.device_gateway.device_profile.domain.spec import DeviceSpec
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.signals.metrics import ucum_unit
from relearn.shared.fhir import Issue

_RATE_TOLERANCE = 0.01  # relative: a frame at 1000 Hz fits a device declared at 1005 Hz
_VOLTS = {"V": 1.0, "mV": 1e-3, "uV": 1e-6}


def frame_matches_device(spec: DeviceSpec, frame: SensorFrame, where: str = "frame") -> list[Issue]:
    """What in ``frame`` contradicts the Device it comes from (empty: nothing), each issue naming the field
    under ``where`` (ingest passes ``frames[i]``): ``frames[i].streamType`` for a stream type the device's
    kind does not send, ``frames[i].samplingRateHz`` off the declared rate by more than 1 %,
    ``frames[i].channels[c].name`` for a channel the Device does not declare, ``frames[i].channels[c].unit``
    for another unit than declared (a channel in counts with a transfer function matches either ``{counts}``
    or the transfer's unit), ``frames[i].adc.resolutionBits`` / ``frames[i].adc.transfer.gain`` when they
    differ from the declared ADC. What the Device does not declare is not checked."""
    issues: list[Issue] = []

    def fail(path: str, message: str) -> None:
        issues.append(Issue("processing", f"{path}: {message}", "error", [path]))

    device = f"Device/{spec.id}" if spec.id else "the Device"
    allowed = spec.stream_types
    if allowed is not None and frame.stream_type not in allowed:
        sends = " or ".join(sorted(allowed)) or "no stream itself"
        fail(f"{where}.streamType", f"{device} is a {spec.kind} and sends {sends}, not {frame.stream_type}")
    rate = spec.sampling_rate_hz
    if rate is not None and abs(frame.sampling_rate_hz - rate) > _RATE_TOLERANCE * rate:
        fail(
            f"{where}.samplingRateHz",
            f"{frame.sampling_rate_hz:g} Hz is not the {rate:g} Hz {device} declares (1 % tolerance)",
        )
    if spec.channels:
        transfer = frame.adc.transfer if frame.adc else None
        for c, channel in enumerate(frame.channels):
            declared = spec.channel(channel.name)
            if declared is None:
                names = ", ".join(d.name for d in spec.channels)
                message = f"{channel.name!r} is not a channel of {device} ({names})"
                fail(f"{where}.channels[{c}].name", message)
                continue
            if declared.unit is None:
                continue
            sent = {ucum_unit(channel.unit)}
            if channel.unit == "counts" and transfer is not None:
                sent.add(ucum_unit(transfer.unit))
            if declared.unit not in sent:
                fail(
                    f"{where}.channels[{c}].unit",
                    f"{channel.name} is in {declared.unit} on {device}, not {channel.unit}",
                )
    adc = spec.adc
    if adc is not None and frame.adc is not None:
        if adc.resolution_bits is not None and frame.adc.resolution_bits != adc.resolution_bits:
            fail(
                f"{where}.adc.resolutionBits",
                f"{device} has a {adc.resolution_bits}-bit ADC, not {frame.adc.resolution_bits}-bit",
            )
        transfer = frame.adc.transfer
        if adc.gain is not None and transfer is not None and adc.gain_unit is not None:
            declared_gain = adc.gain * _VOLTS[adc.gain_unit]
            sent_gain = transfer.gain * _VOLTS[ucum_unit(transfer.unit)]
            if not math.isclose(declared_gain, sent_gain, rel_tol=1e-6):
                fail(
                    f"{where}.adc.transfer.gain",
                    f"{transfer.gain:g} {transfer.unit}/count is not the gain {device} declares "
                    f"({adc.gain:g} {adc.gain_unit}/count)",
                )
    return issues
