"""The FHIR response class: ``application/fhir+json``, compact JSON, no re-serialisation surprises."""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse

FHIR_JSON = "application/fhir+json"


class FhirResponse(JSONResponse):
    media_type = FHIR_JSON

    def render(self, content: Any) -> bytes:
        # Stored resources arrive as pre-rendered text (``RawJson``) so their decimals
        # keep the precision the client sent; everything else is plain JSON.
        if isinstance(content, RawJson):
            return content.text.encode("utf-8")
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RawJson:
    """JSON text passed through to the client byte for byte."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
