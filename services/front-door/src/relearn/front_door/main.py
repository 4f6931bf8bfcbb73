"""The front door: one FHIR base URL for every resource type, routed to the owning service.

``/fhir/metadata`` merges the services' CapabilityStatements; ``/fhir/<Type>/...`` is
forwarded to the service that declared ``<Type>`` (bundles.py: batch/transaction Bundles at
``POST /fhir``; includes.py: ``_include``/``_revinclude`` across services; shared_types.py:
a type several services serve). Tokens are verified by the services
themselves (the front door passes ``Authorization`` through), so no route is open by
going around it. Under ``make run`` it also hosts the development token issuer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from relearn.front_door.bundles import BundleRouter
from relearn.front_door.config import Settings
from relearn.front_door.includes import IncludeResolver, check_revincludes, wants_includes
from relearn.front_door.proxy import forward
from relearn.front_door.routing import RoutingTable
from relearn.front_door.shared_types import route_shared_type
from relearn.shared.auth.dev_issuer import DevIssuer, dev_token_router
from relearn.shared.fhir.errors import NotFound
from relearn.shared.fhir.handlers import install_error_handlers
from relearn.shared.fhir.response import FhirResponse
from relearn.shared.logging import configure_logging

_FHIR_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _fhir_routes(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/fhir", tags=["FHIR"])

    @router.get("/metadata", response_class=FhirResponse, summary="CapabilityStatement of the whole platform")
    async def metadata(request: Request) -> FhirResponse:
        table: RoutingTable = request.app.state.routing
        await table.refresh()
        return FhirResponse(table.capability_statement(settings.fhir_base_url))

    @router.post(
        "",
        response_class=FhirResponse,
        summary="batch (split across services) or transaction (atomic within one service) Bundle",
    )
    # fhirpy (execute("/")) and client-py (Bundle.create) post to the base URL with a trailing slash.
    @router.post("/", include_in_schema=False)
    async def system_bundle(request: Request) -> Response:
        table: RoutingTable = request.app.state.routing
        bundles = BundleRouter(
            table, request.app.state.http, settings.fhir_base_url, settings.upstream_timeout_s
        )
        return await bundles.handle(request)

    @router.api_route("/{resource_type}", methods=_FHIR_METHODS, include_in_schema=False)
    @router.api_route("/{resource_type}/{rest:path}", methods=_FHIR_METHODS, include_in_schema=False)
    async def route(request: Request, resource_type: str, rest: str = "") -> Response:
        table: RoutingTable = request.app.state.routing
        owner = await table.owner_of(resource_type)
        if owner is None:
            raise NotFound(
                f"Resource type '{resource_type}' is not served by this server", issue_code="not-supported"
            )
        search = (
            rest in ("", "_search")
            and request.method in ("GET", "POST")
            and not (request.method == "POST" and rest == "")
        )
        if search:
            await check_revincludes(table, resource_type, request)
        services = await table.services_of(resource_type)
        if len(services) > 1:
            response = await route_shared_type(
                request,
                services,
                table,
                request.app.state.http,
                settings.fhir_base_url,
                settings.upstream_timeout_s,
                resource_type,
                rest,
            )
        else:
            response = await forward(request.app.state.http, owner, request, settings.upstream_timeout_s)
        if search and await wants_includes(request):
            resolver = IncludeResolver(
                table, request.app.state.http, settings.fhir_base_url, settings.upstream_timeout_s
            )
            response = await resolver.resolve(request, response)
        return response

    return router


def _health_routes() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "front-door"}

    @router.get("/readyz", summary="Ready when every service behind the front door is ready")
    async def readyz(request: Request) -> JSONResponse:
        table: RoutingTable = request.app.state.routing
        client: httpx.AsyncClient = request.app.state.http

        async def check(base: str) -> str:
            try:
                resp = await client.get(f"{base}/readyz", timeout=5.0)
                return "ok" if resp.status_code == 200 else f"not ready ({resp.status_code})"
            except httpx.HTTPError as exc:
                return f"unreachable: {type(exc).__name__}"

        names = table.upstream_names()
        states = await asyncio.gather(*(check(b) for b in names.values()))
        checks: dict[str, Any] = dict(zip(names, states, strict=True))
        ready = all(s == "ok" for s in states)
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503
        )

    return router


def create_app(settings: Settings | None = None, *, http: httpx.AsyncClient | None = None) -> FastAPI:
    """Build the front door; tests may pass an ``httpx.AsyncClient`` wired to in-process services."""
    settings = settings or Settings()
    configure_logging("front-door", settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
        app.state.http = client
        app.state.routing = RoutingTable(settings.upstreams, client)
        try:
            yield
        finally:
            if http is None:
                await client.aclose()

    app = FastAPI(
        title="Relearn front door",
        description="One FHIR R4 base URL for every Relearn resource type.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(_health_routes())
    app.include_router(_fhir_routes(settings))
    if settings.dev_issuer_enabled:
        issuer = DevIssuer.from_settings(settings)
        app.include_router(dev_token_router(issuer))
    return app
