"""Liveness (``/healthz``), readiness (``/readyz``: database and broker reachable) and ``/metrics``.

``/readyz`` also reports the outbox (events waiting, events dead-lettered) as detail: a dead letter
needs an operator, but does not make the service unready. ``/metrics`` gives the same counts in the
Prometheus text format.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from relearn.shared.db import ping
from relearn.shared.events.outbox import outbox_counts


class BrokerProbe:
    """Remembers the last broker check for a few seconds so probes don't flood the broker."""

    def __init__(self, check: Callable[[], bool], ttl_s: float = 5.0) -> None:
        self._check = check
        self._ttl = ttl_s
        self._at = 0.0
        self._ok = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._at > self._ttl:
            self._ok = self._check()
            self._at = now
        return self._ok


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    def healthz(request: Request) -> dict[str, str]:
        return {"status": "ok", "service": request.app.title}

    @router.get("/readyz", summary="Readiness: the database and the broker are reachable")
    def readyz(request: Request) -> JSONResponse:
        checks: dict[str, Any] = {}
        try:
            ping(request.app.state.engine)
            checks["database"] = "ok"
        except Exception as exc:  # any driver error means "not ready"
            checks["database"] = f"unreachable: {type(exc).__name__}"
        probe: BrokerProbe = request.app.state.broker_probe
        checks["broker"] = "ok" if probe() else "unreachable"
        ready = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not-ready", "checks": checks}
        if checks["database"] == "ok":
            try:
                body["outbox"] = outbox_counts(request.app.state.engine)
            except Exception as exc:  # e.g. not migrated yet: say so, the checks above decide readiness
                body["outbox"] = f"unavailable: {type(exc).__name__}"
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get(
        "/metrics", summary="Outbox counts in the Prometheus text format", response_class=PlainTextResponse
    )
    def metrics(request: Request) -> PlainTextResponse:
        counts = outbox_counts(request.app.state.engine)
        lines = [
            "# HELP relearn_outbox_pending Events committed and not yet published to the broker.",
            "# TYPE relearn_outbox_pending gauge",
            f"relearn_outbox_pending {counts['pending']}",
            "# HELP relearn_outbox_dead_letters Events that can never be published (outbox_dead_letter).",
            "# TYPE relearn_outbox_dead_letters gauge",
            f"relearn_outbox_dead_letters {counts['deadLettered']}",
        ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return router
