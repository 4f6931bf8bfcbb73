"""Which service owns which REST path, learned from each service's OpenAPI document.

Like FHIR types (routing.py), nothing is hard-coded: the first segment of every path a service's
``/openapi.json`` lists (``/streams/{id}/close`` -> ``streams``) is routed to that service. The
front door's own paths (``/fhir``, ``/auth``, ``/healthz`` ...) and every service's plumbing
(``/healthz``, ``/readyz``, ``/metrics``, ``/docs``, ``/openapi.json``, ``/redoc``) are never routed. A
segment two services claim is a configuration error: it is logged and left unrouted (404), rather
than sending requests to whichever answered first.

OpenAPI does not list WebSocket routes, so those are configured (``Settings.websocket_routes``):
each prefix goes to the service that owns a given path (learned as above) or to a named service.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

logger = logging.getLogger(__name__)

# Every service serves these itself; they are not part of its REST API.
SERVICE_PLUMBING = frozenset({"fhir", "healthz", "readyz", "metrics", "docs", "openapi.json", "redoc"})


def first_segment(path: str) -> str:
    """``/streams/{id}/close`` -> ``streams``; ``/`` -> ``""``."""
    return path.lstrip("/").split("/", 1)[0]


class RestRoutes:
    def __init__(
        self,
        upstreams: Mapping[str, str],
        client: httpx.AsyncClient,
        *,
        reserved: Iterable[str] = (),
        websocket_routes: Mapping[str, str] | None = None,
        refresh_after_s: float = 5.0,
    ) -> None:
        self._upstreams = dict(upstreams)
        self._client = client
        self._reserved = SERVICE_PLUMBING | set(reserved)
        # Longest prefix first, so /a/ws/x is matched by /a/ws before /a.
        self._websockets = sorted(
            ((p.rstrip("/") or "/", t) for p, t in (websocket_routes or {}).items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )
        self._refresh_after = refresh_after_s
        self._specs: dict[str, dict[str, Any]] = {}  # service -> its last OpenAPI document
        self._owners: dict[str, str] = {}  # segment -> service
        self._conflicts: dict[str, list[str]] = {}  # segment -> the services that claim it
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        """Read every service's OpenAPI paths (at most every few seconds unless forced)."""
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self._refresh_after:
                return
            results = await asyncio.gather(*(self._fetch(n, b) for n, b in self._upstreams.items()))
            for name, spec in results:
                if spec is not None:  # a service that does not answer keeps its last known paths
                    self._specs[name] = spec
            claims: dict[str, list[str]] = {}
            for name in self._upstreams:
                for segment in sorted(self._segments_of(name)):
                    claims.setdefault(segment, []).append(name)
            conflicts = {s: names for s, names in claims.items() if len(names) > 1}
            for segment, names in conflicts.items():
                if self._conflicts.get(segment) != names:
                    logger.error(
                        "REST path claimed by several services; not routed",
                        extra={"segment": f"/{segment}", "services": names},
                    )
            self._conflicts = conflicts
            self._owners = {s: names[0] for s, names in claims.items() if len(names) == 1}
            self._loaded_at = time.monotonic()

    async def _fetch(self, name: str, base: str) -> tuple[str, dict[str, Any] | None]:
        try:
            resp = await self._client.get(f"{base}/openapi.json", timeout=5.0)
            resp.raise_for_status()
            spec = resp.json()
            if not isinstance(spec, dict) or not isinstance(spec.get("paths", {}), dict):
                raise ValueError("not an OpenAPI document")
            return name, spec
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("upstream OpenAPI unavailable", extra={"upstream": name, "error": str(exc)})
            return name, None

    def _segments_of(self, name: str) -> set[str]:
        out: set[str] = set()
        for path in self._specs.get(name, {}).get("paths", {}):
            segment = first_segment(str(path))
            if not segment or segment in self._reserved:
                continue
            if "{" in segment:  # /{anything}: a service cannot claim the whole host
                logger.warning(
                    "templated first path segment not routed", extra={"upstream": name, "path": path}
                )
                continue
            out.add(segment)
        return out

    async def service_for(self, path: str) -> str | None:
        """The service that serves the REST ``path`` (None: no service, or several, claim it)."""
        segment = first_segment(path)
        if not segment or segment in self._reserved:
            return None
        if segment not in self._owners:
            await self.refresh()
        return self._owners.get(segment)

    async def websocket_service_for(self, path: str) -> str | None:
        """The service behind a configured WebSocket prefix ``path`` falls under (None: not configured)."""
        for prefix, target in self._websockets:
            if path == prefix or path.startswith(f"{prefix.rstrip('/')}/"):
                if target.startswith("/"):
                    return await self.service_for(target)
                return target if target in self._upstreams else None
        return None

    def why_not(self, path: str) -> str:
        """Why ``path`` is not routed, for the 404's diagnostics."""
        segment = first_segment(path)
        if segment in self._conflicts:
            names = " and ".join(self._conflicts[segment])
            return f"/{segment} is claimed by both {names}, so it is not routed (a configuration error)"
        missing = [n for n in self._upstreams if n not in self._specs]
        note = f" ({', '.join(missing)} did not answer; try again)" if missing else ""
        return f"No service serves {path}{note}. GET /apis lists the REST APIs behind this host."

    def base_of(self, service: str) -> str:
        return self._upstreams[service]

    def services(self) -> list[str]:
        return list(self._upstreams)

    def spec_of(self, service: str) -> dict[str, Any] | None:
        return self._specs.get(service)

    def catalogue(self) -> list[dict[str, Any]]:
        """Each service with the path prefixes routed to it and where its API is documented."""
        segments: dict[str, list[str]] = {name: [] for name in self._upstreams}
        for segment, name in sorted(self._owners.items()):
            segments[name].append(f"/{segment}")
        out: list[dict[str, Any]] = []
        for name in self._upstreams:
            spec = self._specs.get(name)
            entry: dict[str, Any] = {
                "service": name,
                "title": spec.get("info", {}).get("title") if spec else None,
                "paths": segments[name],
                "websockets": [p for p, t in self._websockets if self._ws_owner_now(t) == name],
                "openapi": f"/apis/{name}/openapi.json",
                "docs": f"/apis/{name}/docs",
                "available": spec is not None,
            }
            out.append(entry)
        return out

    def _ws_owner_now(self, target: str) -> str | None:
        if target.startswith("/"):
            return self._owners.get(first_segment(target))
        return target
