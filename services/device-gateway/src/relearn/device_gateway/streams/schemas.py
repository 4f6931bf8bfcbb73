"""The bodies of the streams API (``/streams``): what a binding is opened with and how it reads back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, field_validator
from pydantic.alias_generators import to_camel

from relearn.device_gateway.signals.frames import StreamType
from relearn.device_gateway.streams.domain import Muscles, Pairs

_FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _reference_id(prefix: str) -> Any:
    """Accept ``id`` or ``<Type>/id``; keep the id."""

    def strip(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(prefix + "/"):
            return value.removeprefix(prefix + "/")
        return value

    return strip


class Protocol(_Wire):
    """How the recording is made: what the processor needs to label and compare trials."""

    vision: Literal["open", "closed"] | None = Field(default=None, description="Eyes open or closed")
    surface: Literal["firm", "foam"] | None = Field(default=None, description="Standing surface")
    task: str | None = Field(
        default=None, max_length=200, description="e.g. 'quiet-standing', 'knee-extension'"
    )
    cue_time: float | None = Field(
        default=None, ge=0, description="Seconds from the stream's origin at which the go cue was given"
    )
    onset_reference: str | None = Field(
        default=None,
        max_length=64,
        description="EMG: the synergist channel onset latencies are timed against (e.g. vastus-lateralis "
        "for VMO timing); without it they are timed from cueTime; with neither there is no latency",
    )
    muscles: Muscles | None = None
    pairs: Pairs | None = None
    board_lx_cm: float | None = Field(
        default=None, gt=0, le=500, description="Load-cell board: distance between left and right cells (cm)"
    )
    board_ly_cm: float | None = Field(
        default=None, gt=0, le=500, description="Load-cell board: distance between front and back cells (cm)"
    )


class Targets(_Wire):
    """Biofeedback targets shown live to the patient."""

    emg_percent_mvc_min: float | None = Field(default=None, ge=0, le=1000, description="Lowest %MVC to reach")
    sway_radius_max_cm: float | None = Field(
        default=None, gt=0, le=100, description="Largest COP radius (cm)"
    )


class StreamIn(_Wire):
    """Open a binding of a device's stream to a patient (and a session)."""

    device: Annotated[str, Field(pattern=_FHIR_ID, description="Device id (or Device/<id>)")]
    stream_type: StreamType
    patient: Annotated[str, Field(pattern=_FHIR_ID, description="Patient id (or Patient/<id>)")]
    session: Annotated[
        str | None, Field(default=None, pattern=_FHIR_ID, description="Encounter id of the session, if any")
    ] = None
    protocol: Protocol = Field(default_factory=Protocol)
    mvc: dict[Annotated[str, Field(min_length=1, max_length=64)], PositiveFloat] | None = Field(
        default=None,
        description="Maximal voluntary contraction envelope per EMG channel (channel units), for %MVC",
    )
    targets: Targets | None = None

    _device = field_validator("device", mode="before")(_reference_id("Device"))
    _patient = field_validator("patient", mode="before")(_reference_id("Patient"))
    _session = field_validator("session", mode="before")(_reference_id("Encounter"))


class GapView(_Wire):
    expected: int = Field(description="The sequence that was expected")
    got: int = Field(description="The sequence that arrived instead")
    missing: int = Field(description="How many of expected..got-1 are still missing (late frames fill gaps)")


class StreamView(_Wire):
    id: str
    device: str
    stream_type: StreamType
    patient: str
    session: str | None
    protocol: dict[str, Any]
    mvc: dict[str, float] | None
    targets: dict[str, Any] | None
    status: Literal["open", "closed"]
    next_sequence: int = Field(description="One past the highest sequence accepted (the next one expected)")
    frames: int = Field(description="Frames accepted")
    samples: int = Field(description="Samples accepted")
    gaps: list[GapView]
    origin: datetime | None = Field(description="The first accepted frame's startTime (window alignment)")
    layout: dict[str, Any] | None = Field(
        description="samplingRateHz, channels and adc fixed by the first frame (null before it)"
    )
    created: datetime
    closed: datetime | None


class WindowMetricView(_Wire):
    metric: str = Field(description="A code of the evaluation CodeSystem (emg-rms, emg-envelope-peak, ...)")
    channel: str | None
    muscle: str | None = Field(
        default=None, description="The muscle the binding's protocol gives the channel"
    )
    value: float | None = Field(description="Null when the window's metric is not computable")
    unit: str
    status: str = Field(description="measured | not-computable")


class WindowView(_Wire):
    index: int = Field(description="Window i covers [origin + i s, origin + (i + 1) s)")
    start: datetime
    end: datetime = Field(description="The real end (the last window of a recording may be shorter)")
    status: Literal["measured", "partial", "gap"]
    reason: str | None = Field(description="Why a gap has no values, or why a window is partial")
    metrics: list[WindowMetricView] = Field(
        description="Per channel: RMS, envelope peak, median frequency (and %MVC with the channel's MVC)"
    )


class WindowsView(_Wire):
    """The 1 s window metrics of an EMG stream, as the metrics processor recorded them (balance streams have
    none: their metrics are defined on whole trials)."""

    stream: str
    total: int = Field(description="Windows recorded so far")
    offset: int
    windows: list[WindowView]
