"""Liveness (``/healthz``) and readiness (``/readyz``: database and broker reachable)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from relearn.shared.db import ping


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
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503
        )

    return router
