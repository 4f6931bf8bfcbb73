"""Which service owns which FHIR resource type, learned from each service's CapabilityStatement.

The front door never hard-codes ownership: a service that starts serving a new type shows
up here after its ``/fhir/metadata`` lists it. The merged CapabilityStatement is the union
of what the services declare, so it tells the truth about what the one base URL answers.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class RoutingTable:
    def __init__(self, upstreams: dict[str, str], client: httpx.AsyncClient, *, refresh_after_s: float = 5.0):
        self._upstreams = upstreams
        self._client = client
        self._refresh_after = refresh_after_s
        self._owners: dict[str, str] = {}
        self._statements: dict[str, dict[str, Any]] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        """Ask every service for its CapabilityStatement (at most every few seconds)."""
        async with self._lock:
            if not force and time.monotonic() - self._loaded_at < self._refresh_after:
                return
            results = await asyncio.gather(
                *(self._fetch(name, base) for name, base in self._upstreams.items())
            )
            for name, statement in results:
                if statement is not None:
                    self._statements[name] = statement
            owners: dict[str, str] = {}
            for name, statement in self._statements.items():
                for rest in statement.get("rest", []):
                    for resource in rest.get("resource", []):
                        owners[resource["type"]] = self._upstreams[name]
            self._owners = owners
            self._loaded_at = time.monotonic()

    async def _fetch(self, name: str, base: str) -> tuple[str, dict[str, Any] | None]:
        try:
            resp = await self._client.get(f"{base}/fhir/metadata", timeout=5.0)
            resp.raise_for_status()
            return name, resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("upstream metadata unavailable", extra={"upstream": name, "error": str(exc)})
            return name, None

    async def owner_of(self, resource_type: str) -> str | None:
        if resource_type not in self._owners:
            await self.refresh()
        return self._owners.get(resource_type)

    def upstream_names(self) -> dict[str, str]:
        return dict(self._upstreams)

    def capability_statement(self, base_url: str) -> dict[str, Any]:
        """The union of the services' statements, under the one base URL."""
        resources: list[dict[str, Any]] = []
        security: dict[str, Any] | None = None
        for name in sorted(self._statements):
            for rest in self._statements[name].get("rest", []):
                security = security or rest.get("security")
                resources.extend(copy.deepcopy(rest.get("resource", [])))
        resources.sort(key=lambda r: r["type"])
        rest_out: dict[str, Any] = {"mode": "server", "resource": resources}
        if security:
            rest_out["security"] = security
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": datetime.now(UTC).date().isoformat(),
            "kind": "instance",
            "software": {"name": "Relearn"},
            "implementation": {"description": "Relearn FHIR front door", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": ["json", "application/fhir+json"],
            "rest": [rest_out],
        }
