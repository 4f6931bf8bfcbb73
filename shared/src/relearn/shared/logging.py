"""Structured JSON logs (structlog over the stdlib), with request and event ids bound per context.

Library code logs with ``logging.getLogger(__name__)`` and ``extra={...}``; this module
renders every record as one JSON line carrying the service name and whatever ids are
bound in the current context (``request_id`` by the HTTP middleware, ``event_id`` by the
consumer runner).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _extra_fields(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Lift stdlib `extra={...}` attributes into the JSON line.
    record: logging.LogRecord | None = event_dict.get("_record")
    if record is not None:
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_") and key not in event_dict:
                event_dict[key] = value
    return event_dict


# Browsers cannot set headers on a WebSocket, so tokens may come as `?access_token=`; servers log URLs.
_TOKEN_IN_URL = re.compile(r"(access_token=)[^&\s\"']+")


def redact_tokens(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace bearer tokens carried in URLs (any string field of the line) with `***`."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "access_token=" in value:
            event_dict[key] = _TOKEN_IN_URL.sub(r"\1***", value)
    return event_dict


def configure_logging(service: str, level: str = "INFO") -> None:
    """Render all logs as JSON lines on stderr; safe to call more than once."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _extra_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_tokens,
            structlog.processors.JSONRenderer(default=str),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


bind_context = structlog.contextvars.bind_contextvars
unbind_context = structlog.contextvars.unbind_contextvars
bound_context = structlog.contextvars.bound_contextvars
