"""A request deadline that never hides a write: work still running when it passes is rolled back.

The front door gives up on a service after ``upstream_timeout_s`` (504). A client that sees that 504 cannot
know whether its write was stored, and a retry may store it twice. So each service gives every request a
deadline shorter than that (``request_deadline_s``): :class:`DeadlineMiddleware` starts the clock, and every
commit (:func:`relearn.shared.db.transaction`, so ``SessionDep`` too) first calls :func:`check_deadline`.
Past the deadline the transaction is rolled back and the answer is 503 with ``Retry-After``: nothing of the
request was committed, and the client may safely try again.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

from starlette.types import ASGIApp, Receive, Scope, Send

from relearn.shared.fhir.errors import FhirError

__all__ = ["DeadlineExceeded", "DeadlineMiddleware", "check_deadline"]

# monotonic() time after which the current request's work must not commit; None outside requests.
_deadline: ContextVar[float | None] = ContextVar("relearn_request_deadline", default=None)


class DeadlineExceeded(FhirError):
    """503: the request ran past its deadline and its work was rolled back (nothing stored)."""

    status_code = 503
    issue_code = "timeout"


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` when the current request's deadline has passed (no-op outside one)."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded(
            "The request took longer than the service's deadline; nothing was stored. Retry it.",
            headers={"Retry-After": "1"},
        )


class DeadlineMiddleware:
    """Pure ASGI: each HTTP request runs with a deadline ``seconds`` from its start (WebSockets have none)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _deadline.set(time.monotonic() + self.seconds)
        try:
            await self.app(scope, receive, send)
        finally:
            _deadline.reset(token)
