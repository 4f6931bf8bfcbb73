"""A request deadline that never hides a write: work still running when it passes, or when the client went
away, is rolled back.

The front door gives up on a service after ``upstream_timeout_s`` (504). A client that sees that 504 cannot
know whether its write was stored, and a retry may store it twice. So each service gives every request a
deadline shorter than that (``request_deadline_s``): :class:`DeadlineMiddleware` starts the clock, and every
commit (:func:`relearn.shared.db.transaction`, so ``SessionDep`` too) first calls :func:`check_deadline`.
Past the deadline the transaction is rolled back and the answer is 503 with ``Retry-After``: nothing of the
request was committed, and the client may safely try again.

The middleware also watches the connection: a client (or the front door, when its own timeout fires) that
disconnects before the answer was sent marks the request abandoned, and its commit is refused the same way
(the 503 goes nowhere). A caller that will give up sooner says so with ``X-Request-Timeout-Ms`` (the front
door sends its ``upstream_timeout_s``): the deadline is then that, less a margin for the commit and the
answer's way back (a third, at most one second), when it is shorter than the service's own. Only a commit
that had already started when the client left can still land; the client's retry (same ``Idempotency-Key``,
or a conditional create) then finds it and stores nothing more.

:class:`CancelOnDisconnect` is the front door's side: a client that leaves cancels the request there, which
closes the connection to the service, so the service rolls the work back as above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relearn.shared.fhir.errors import FhirError

__all__ = [
    "CancelOnDisconnect",
    "ClientDisconnected",
    "DeadlineExceeded",
    "DeadlineMiddleware",
    "check_deadline",
]

logger = logging.getLogger(__name__)


@dataclass
class _RequestState:
    deadline: float
    disconnected: bool = False
    answered: bool = False


# The current request's state (its deadline, whether its client left); None outside requests.
_state: ContextVar[_RequestState | None] = ContextVar("relearn_request_state", default=None)


class DeadlineExceeded(FhirError):
    """503: the request ran past its deadline and its work was rolled back (nothing stored)."""

    status_code = 503
    issue_code = "timeout"


class ClientDisconnected(DeadlineExceeded):
    """503 (to nobody): the client went away before the answer; the work was rolled back."""


def check_deadline() -> None:
    """Raise :class:`DeadlineExceeded` when the current request's deadline has passed, or
    :class:`ClientDisconnected` when its client went away (no-op outside a request)."""
    state = _state.get()
    if state is None:
        return
    if state.disconnected:
        logger.warning("client disconnected before the commit: rolled back")
        raise ClientDisconnected(
            "The client went away before the answer; nothing was stored. Retry it.",
            headers={"Retry-After": "1"},
        )
    if time.monotonic() >= state.deadline:
        raise DeadlineExceeded(
            "The request took longer than the service's deadline; nothing was stored. Retry it.",
            headers={"Retry-After": "1"},
        )


TIMEOUT_HEADER = "X-Request-Timeout-Ms"
_TIMEOUT_HEADER = TIMEOUT_HEADER.lower().encode()


def _caller_budget(scope: Scope) -> float | None:
    """Seconds the caller waits (``X-Request-Timeout-Ms``) less the margin, or None."""
    for name, value in scope.get("headers", ()):
        if name.lower() == _TIMEOUT_HEADER:
            try:
                ms = float(value.decode("latin-1"))
            except ValueError:
                return None
            if not ms > 0 or ms != ms or ms == float("inf"):
                return None
            seconds = ms / 1000.0
            # A third: the margin also covers what runs outside this middleware on the way in and out (the
            # audit record, the guard reading the body, the request id); a fifth leaked commits under load.
            return seconds - min(seconds / 3.0, 1.0)
    return None


class _Watch:
    """Reads the request's messages as they come (the app gets them from a queue), so a disconnect is
    seen while the app is still working. ``on_disconnect`` runs when the client leaves before the answer."""

    def __init__(self, receive: Receive, send: Send, state: _RequestState) -> None:
        self._receive = receive
        self._send = send
        self.state = state
        self._queue: asyncio.Queue[Message] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            try:
                message = await self._receive()
            except Exception:  # the server's receive failed: treat as gone
                message = {"type": "http.disconnect"}
            await self._queue.put(message)
            if message["type"] == "http.disconnect":
                if not self.state.answered:
                    self.state.disconnected = True
                self._gone.set()
                return

    async def receive(self) -> Message:
        if self._queue.empty() and self._task.done():
            return {"type": "http.disconnect"}
        return await self._queue.get()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.state.answered = True
        await self._send(message)

    async def gone(self) -> None:
        await self._gone.wait()

    def close(self) -> None:
        self._task.cancel()


class DeadlineMiddleware:
    """Pure ASGI: each HTTP request runs with a deadline ``seconds`` from its start, and is marked abandoned
    if its client disconnects first (WebSockets have neither)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seconds = self.seconds
        budget = _caller_budget(scope)
        if budget is not None:
            seconds = min(seconds, budget)
        state = _RequestState(time.monotonic() + seconds)
        watch = _Watch(receive, send, state)
        token = _state.set(state)
        try:
            await self.app(scope, watch.receive, watch.send)
        finally:
            _state.reset(token)
            watch.close()


class CancelOnDisconnect:
    """Pure ASGI: a client that disconnects before its answer cancels the request (the front door: the
    cancelled call to a service closes that connection, and the service rolls the work back)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        watch = _Watch(receive, send, _RequestState(float("inf")))
        work = asyncio.ensure_future(self.app(scope, watch.receive, watch.send))
        gone = asyncio.ensure_future(watch.gone())
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and watch.state.disconnected:
                work.cancel()
                logger.info("client disconnected: request cancelled", extra={"path": scope.get("path")})
                with contextlib.suppress(asyncio.CancelledError):
                    await work
                return
            await work
        finally:
            gone.cancel()
            watch.close()
            if not work.done():
                work.cancel()
