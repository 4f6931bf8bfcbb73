"""What goes over the wire: the request and response models, parsing a request into frames (400/413/422
outcomes), and the request body's OpenAPI schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from relearn.device_gateway.signals.frames import SensorFrame
from relearn.shared.fhir import FhirError, InvalidRequest, UnprocessableEntity, validation_issues


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class IngestRequest(_Wire):
    """A batch of frames, of any streams; stored all together or not at all."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    frames: Annotated[list[SensorFrame], Field(min_length=1)]


class FrameResult(_Wire):
    stream_id: str
    sequence: int
    status: Literal["accepted", "duplicate"]


class GapReport(_Wire):
    stream_id: str
    expected: int = Field(description="The sequence that was expected next")
    got: int = Field(description="The sequence that arrived (frames expected..got-1 are missing so far)")


class IngestResponse(_Wire):
    results: list[FrameResult] = Field(description="One per frame of the request, in its order")
    gaps: list[GapReport] = Field(description="Jumps in sequence detected by this request")


class TooLarge(FhirError):
    """413: too many frames in one request, or a frame too large for one event; nothing was stored."""

    status_code = 413
    issue_code = "too-long"


# -- parsing ----------------------------------------------------------------------------------------------
def parse_request(raw: bytes | str, max_frames: int) -> list[SensorFrame]:
    """``{"frames": [...]}`` -> frames (parsed in pydantic's core); else a 400/413/422 outcome."""
    try:
        frames = IngestRequest.model_validate_json(raw).frames
    except ValidationError as exc:
        raise _invalid(exc) from None
    return check_frame_count(frames, max_frames)


def parse_decoded(body: Any, max_frames: int, *, allow_single: bool = False) -> list[SensorFrame]:
    """Already-decoded JSON (the WebSocket's); with ``allow_single`` a bare frame is a batch of one."""
    if allow_single and isinstance(body, dict) and "frames" not in body:
        body = {"frames": [body]}
    try:
        frames = IngestRequest.model_validate(body).frames
    except ValidationError as exc:
        raise _invalid(exc) from None
    return check_frame_count(frames, max_frames)


def parse_valid_message(raw: str | bytes) -> list[SensorFrame] | None:
    """The fast path for a valid WebSocket message: validated straight from its JSON in pydantic's core
    (one frame, or a ``{"frames": [...]}`` batch); None for anything else, which
    :func:`~relearn.device_gateway.ingest.api.handle_message` then parses as before to report it."""
    batch = ('"frames"' in raw) if isinstance(raw, str) else (b'"frames"' in raw)
    try:
        if batch:
            return IngestRequest.model_validate_json(raw).frames
        return [SensorFrame.model_validate_json(raw)]
    except ValidationError:
        return None


def check_frame_count(frames: list[SensorFrame], max_frames: int) -> list[SensorFrame]:
    """``frames``, or 413 when there are more than ``max_frames`` of them."""
    if len(frames) > max_frames:
        raise TooLarge(
            f"{len(frames)} frames in one request; send at most {max_frames}",
            expression="frames",
        )
    return frames


def _invalid(exc: ValidationError) -> FhirError:
    errors = exc.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return InvalidRequest(f"The body is not JSON: {errors[0]['msg']}")
    issues = validation_issues(errors)
    return UnprocessableEntity(
        "Invalid frames: nothing was stored", issues=issues or None, expression="frames"
    )


# -- OpenAPI ----------------------------------------------------------------------------------------------
INGEST_BODY_SCHEMA = "IngestRequest"


def openapi_schemas() -> dict[str, Any]:
    """Component schemas of the ingest request body (its route reads the raw body to stay off the loop)."""
    schema = IngestRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, INGEST_BODY_SCHEMA: schema}
