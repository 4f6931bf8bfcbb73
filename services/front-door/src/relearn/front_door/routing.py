"""Which service owns which FHIR resource type, learned from each service's CapabilityStatement.

The front door never hard-codes ownership: a service that starts serving a new type shows
up here after its ``/fhir/metadata`` lists it. The merged CapabilityStatement is the union
of what the services declare, so it tells the truth about what the one base URL answers.
Until a service has answered once it is *missing*: its types are unknown, so the front door
is not ready, an unknown type answers 503 (not 404), and ``/metadata`` names the service.
A missing service is asked again at most every ``missing_retry_s`` (the others every
``refresh_after_s``); a service known once keeps its last statement while it is down.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

logger = logging.getLogger(__name__)


class RoutingTable:
    def __init__(
        self,
        upstreams: dict[str, str],
        client: httpx.AsyncClient,
        *,
        refresh_after_s: float = 5.0,
        missing_retry_s: float = 0.5,
    ):
        self._upstreams = upstreams
        self._client = client
        self._refresh_after = refresh_after_s
        self._missing_retry = missing_retry_s
        self._missing_at = 0.0
        self._owners: dict[str, str] = {}
        # Type -> the names of the services that declare it (the first one is routed to).
        self._services: dict[str, list[str]] = {}
        self._statements: dict[str, dict[str, Any]] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> None:
        """Ask every service for its CapabilityStatement (at most every few seconds)."""
        async with self._lock:
            now = time.monotonic()
            stale = force or now - self._loaded_at >= self._refresh_after
            if stale:
                names = list(self._upstreams)
            elif self.missing() and now - self._missing_at >= self._missing_retry:
                names = self.missing()  # a starting service: ask it again soon, not in 5 s
            else:
                return
            results = await asyncio.gather(*(self._fetch(name, self._upstreams[name]) for name in names))
            for name, statement in results:
                if statement is not None:
                    self._statements[name] = statement
            services: dict[str, list[str]] = {}
            for name in self._upstreams:  # in the configured order: the first declarer owns the type
                for rest in self._statements.get(name, {}).get("rest", []):
                    for resource in rest.get("resource", []):
                        services.setdefault(resource["type"], []).append(name)
            self._services = services
            self._owners = {rtype: self._upstreams[names[0]] for rtype, names in services.items()}
            if stale:
                self._loaded_at = now
            self._missing_at = now

    def missing(self) -> list[str]:
        """The services whose CapabilityStatement was never received (starting, or down since start)."""
        return [name for name in self._upstreams if name not in self._statements]

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

    async def service_of(self, resource_type: str) -> str | None:
        """The name of the service that owns ``resource_type`` (None: no service serves it)."""
        if resource_type not in self._services:
            await self.refresh()
        names = self._services.get(resource_type)
        return names[0] if names else None

    async def services_of(self, resource_type: str) -> list[str]:
        """Every service that declares ``resource_type``, the owner first."""
        if resource_type not in self._services:
            await self.refresh()
        return list(self._services.get(resource_type, []))

    def base_of(self, service: str) -> str:
        return self._upstreams[service]

    def types_by_service(self) -> dict[str, list[str]]:
        """The types each service owns, as the front door routes them."""
        out: dict[str, list[str]] = {}
        for rtype, names in sorted(self._services.items()):
            out.setdefault(names[0], []).append(rtype)
        return out

    def upstream_names(self) -> dict[str, str]:
        return dict(self._upstreams)

    def capability_statement(self, base_url: str) -> dict[str, Any]:
        """The union of the services' statements, under the one base URL.

        A type declared by several services is listed once, as the service it is routed to
        declares it. ``batch`` and ``transaction`` are listed when every service takes them,
        with what the front door adds: batches are split across services, transactions must
        stay within one.
        """
        resources: dict[str, dict[str, Any]] = {}
        security: dict[str, Any] | None = None
        system: list[set[str]] = []
        for name in self._upstreams:
            if name not in self._statements:
                continue
            codes: set[str] = set()
            for rest in self._statements[name].get("rest", []):
                security = security or rest.get("security")
                codes.update(i.get("code", "") for i in rest.get("interaction", []))
                for resource in rest.get("resource", []):
                    if resource["type"] in resources:
                        continue
                    described = copy.deepcopy(resource)
                    owners = self._services.get(resource["type"], [])
                    if len(owners) > 1:
                        note = (
                            f"Served by {' and '.join(owners)} (each its own resources; reads and searches "
                        )
                        note += "cover all of them, writes go to the first)."
                        described["documentation"] = f"{described.get('documentation', '')} {note}".strip()
                    resources[resource["type"]] = described
            system.append(codes)
        rest_out: dict[str, Any] = {"mode": "server", "resource": [resources[t] for t in sorted(resources)]}
        missing = self.missing()
        if missing:  # say so, rather than let a client cache "these types are not supported"
            rest_out["documentation"] = (
                f"Incomplete: {', '.join(missing)} has not published its CapabilityStatement yet (starting "
                "or unavailable); the resource types it serves are missing from this statement and answer "
                "503 with Retry-After until it does. Ask again later."
            )
        if security:
            rest_out["security"] = security
        served = set.intersection(*system) if system else set()
        interactions = [
            {"code": code, "documentation": doc}
            for code, doc in self._system_documentation().items()
            if code in served
        ]
        if interactions:
            rest_out["interaction"] = interactions
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

    def _system_documentation(self) -> dict[str, str]:
        groups = "; ".join(f"{name}: {', '.join(types)}" for name, types in self.types_by_service().items())
        return {
            "transaction": "Atomic within one service: all entries are stored or none is. Every entry of a "
            f"transaction must be of types owned by the same service ({groups}); a transaction that spans "
            "services is refused with 400 (not-supported) — send a batch. Processed DELETE, POST, PUT, GET; "
            "urn:uuid fullUrl references are rewritten to the assigned ids; request.ifNoneExist and "
            "request.ifMatch are honoured. PATCH is not supported.",
            "batch": "Entries of any types: the front door sends each service its entries (concurrently) and "
            "answers one batch-response in the request's order. Each entry is processed on its own, in its "
            "own database transaction, with its own status (and an OperationOutcome when it failed). "
            "Entries cannot reference each other (use a transaction within one service).",
        }


@dataclass(frozen=True)
class Upstreams:
    """How a FHIR request reaches the services: who serves which type, the HTTP client, the one public FHIR
    base URL (kept without a trailing slash) and how long a service may take to answer."""

    table: RoutingTable
    client: httpx.AsyncClient
    base_url: str
    timeout_s: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
