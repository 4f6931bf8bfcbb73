"""The front door: one host for the FHIR base URL and the services' REST APIs and WebSockets.

``/fhir/metadata`` merges the services' CapabilityStatements; ``/fhir/<Type>/...`` is
forwarded to the service that declared ``<Type>`` (bundles.py: batch/transaction Bundles at
``POST /fhir``; includes.py: ``_include``/``_revinclude`` across services; shared_types.py:
a type several services serve). Any other path is routed by its first segment to the service
whose ``/openapi.json`` lists it (rest.py: ``/streams`` -> device gateway, ``/sessions`` ->
sessions ...); configured WebSocket prefixes (``/ingest/ws``, ``/biofeedback/ws``) are proxied
both ways (wsproxy.py). ``GET /apis`` lists the REST APIs. Tokens are verified by the services
themselves (the front door passes ``Authorization`` through), so no route is open by
going around it. ``/auth`` and the SMART configuration are the authorization server's (``authorization_url``);
without one, the development token issuer is hosted here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response, WebSocket
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Route

from relearn.front_door.bundles import BundleRouter
from relearn.front_door.config import Settings
from relearn.front_door.includes import IncludeResolver, check_revincludes, wants_includes
from relearn.front_door.proxy import (
    AUTH_REQUEST_HEADERS,
    AUTH_RESPONSE_HEADERS,
    RETRY_AFTER_S,
    forward,
    forward_rest,
    unavailable,
    use_lean_client,
)
from relearn.front_door.rest import RestRoutes, first_segment
from relearn.front_door.routing import RoutingTable, Upstreams
from relearn.front_door.shared_types import route_shared_type
from relearn.front_door.upstream import UpstreamClient
from relearn.front_door.wsproxy import proxy_websocket, refuse
from relearn.shared.fhir import FhirResponse, NotFound, install_error_handlers
from relearn.shared.service import (
    CancelOnDisconnect,
    Documents,
    Included,
    RequestGuard,
    configure_logging,
    install_error_docs,
    install_merged_docs,
    settings_limits,
)

_FHIR_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_REST_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def _fhir_routes(settings: Settings) -> tuple[APIRouter, list[Route]]:
    router = APIRouter(prefix="/fhir", tags=["FHIR"])
    fhir_type_routes: list[Route] = []

    def _upstreams(request: Request) -> Upstreams:
        return Upstreams(
            request.app.state.routing,
            request.app.state.http,
            settings.fhir_base_url,
            settings.upstream_timeout_s,
        )

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
        return await BundleRouter(_upstreams(request)).handle(request)

    async def route(request: Request) -> Response:
        resource_type: str = request.path_params["resource_type"]
        rest: str = request.path_params.get("rest", "")
        table: RoutingTable = request.app.state.routing
        owner = await table.owner_of(resource_type)
        if owner is None:
            missing = table.missing()
            if missing:  # maybe theirs: never "not supported" before every service has said what it serves
                raise unavailable(
                    f"Resource type '{resource_type}' is not known yet: {', '.join(missing)} has not "
                    f"published its CapabilityStatement (starting or unavailable); retry in {RETRY_AFTER_S}s"
                )
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
            response = await route_shared_type(request, services, _upstreams(request), resource_type, rest)
        else:
            response = await forward(request.app.state.http, owner, request, settings.upstream_timeout_s)
        if search and await wants_includes(request):
            response = await IncludeResolver(_upstreams(request)).resolve(request, response)
        return response

    # Plain Starlette routes (performance, issue 16: FastAPI's per-request parameter and dependency handling
    # was a fifth of the front door's CPU; this endpoint takes the request only). Not in the OpenAPI document
    # (the services' operations are merged in instead); errors render through the app's handlers as before.
    for path in ("/fhir/{resource_type}", "/fhir/{resource_type}/{rest:path}"):
        type_route = Route(path, route, methods=_FHIR_METHODS, include_in_schema=False)
        assert type_route.methods is not None
        type_route.methods.discard("HEAD")  # Starlette adds it to GET; FastAPI's route did not take it
        fhir_type_routes.append(type_route)
    return router, fhir_type_routes


def _health_routes() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": "front-door"}

    @router.get(
        "/readyz",
        summary="Ready when every service behind the front door is ready and its CapabilityStatement known",
    )
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
        # Ready only once every service's types are known: before, a type could answer 503 here.
        await table.refresh()
        missing = table.missing()
        checks["capabilities"] = "ok" if not missing else f"missing: {', '.join(missing)}"
        ready = all(s == "ok" for s in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": checks}, status_code=200 if ready else 503
        )

    return router


def _api_routes(settings: Settings) -> APIRouter:
    """Where the REST APIs behind this host are documented."""
    router = APIRouter(tags=["REST APIs"])

    async def catalogue(request: Request) -> dict[str, Any]:
        rest: RestRoutes = request.app.state.rest
        await rest.refresh()
        return {"fhir": settings.fhir_base_url, "apis": rest.catalogue()}

    router.add_api_route("/", catalogue, methods=["GET"], include_in_schema=False)
    router.add_api_route(
        "/apis",
        catalogue,
        methods=["GET"],
        summary="The services' REST APIs behind this host: their path prefixes, WebSockets and OpenAPI docs",
    )

    async def _spec(request: Request, service: str) -> dict[str, Any]:
        rest: RestRoutes = request.app.state.rest
        if service not in rest.services():
            raise NotFound(f"No service '{service}' behind this host; GET /apis lists them")
        await rest.refresh()
        spec = rest.spec_of(service)
        if spec is None:
            raise unavailable(f"The {service} service is unavailable")
        return spec

    @router.get(
        "/apis/{service}/openapi.json",
        summary="A service's OpenAPI document (its paths work here)",
        responses={404: {"description": "No such service behind this host (GET /apis lists them)"}},
    )
    async def service_openapi(request: Request, service: str) -> dict[str, Any]:
        return await _spec(request, service)

    @router.get("/apis/{service}/docs", include_in_schema=False)
    async def service_docs(request: Request, service: str) -> HTMLResponse:
        spec = await _spec(request, service)
        title = spec.get("info", {}).get("title", service)
        return get_swagger_ui_html(openapi_url=f"/apis/{service}/openapi.json", title=f"{title} (front door)")

    return router


def _passthrough_routes(settings: Settings) -> APIRouter:
    """Last: every other path goes to the service whose OpenAPI lists its first segment."""
    router = APIRouter()

    @router.api_route("/{path:path}", methods=_REST_METHODS, include_in_schema=False)
    async def rest(request: Request, path: str) -> Response:
        table: RestRoutes = request.app.state.rest
        service = await table.service_for(request.url.path)
        if service is None:
            raise NotFound(table.why_not(request.url.path))
        return await forward_rest(
            request.app.state.http, table.base_of(service), service, request, settings.upstream_timeout_s
        )

    @router.websocket("/{path:path}")
    async def websocket(websocket: WebSocket, path: str) -> None:
        table: RestRoutes = websocket.app.state.rest
        service = await table.websocket_service_for(websocket.url.path)
        if service is None:
            await refuse(websocket, 4404, f"No WebSocket at {websocket.url.path}")
            return
        await proxy_websocket(
            websocket,
            table.base_of(service),
            open_timeout_s=settings.websocket_open_timeout_s,
            max_message_bytes=settings.websocket_max_message_bytes,
        )

    return router


def _own_segments(routes: Iterable[BaseRoute]) -> set[str]:
    """The first path segments the front door answers itself (never routed to a service)."""
    out = {first_segment(str(getattr(route, "path", ""))) for route in routes}
    return {s for s in out if s and "{" not in s}


def _authorization_routes(settings: Settings, upstream: str) -> APIRouter:
    """The authorization server's endpoints, forwarded to it: SMART discovery at the root and the FHIR base,
    and everything under /auth (token, authorize and its page, introspect, revoke, launch, jwks.json)."""
    router = APIRouter(tags=["authorization"])
    base = upstream.rstrip("/")

    async def _forward(request: Request) -> Response:
        return await forward_rest(
            request.app.state.http,
            base,
            "authorization",
            request,
            settings.upstream_timeout_s,
            extra_request_headers=AUTH_REQUEST_HEADERS,
            extra_response_headers=AUTH_RESPONSE_HEADERS,
        )

    @router.get("/.well-known/smart-configuration", summary="SMART on FHIR configuration")
    async def smart_configuration(request: Request) -> Response:
        return await _forward(request)

    @router.get(
        "/fhir/.well-known/smart-configuration", summary="SMART on FHIR configuration (at the FHIR base)"
    )
    async def fhir_smart_configuration(request: Request) -> Response:
        return await _forward(request)

    @router.api_route(
        "/auth/{path:path}",
        methods=["GET", "POST", "OPTIONS"],
        summary="The authorization server: token, authorize, introspect, revoke, launch, jwks.json",
    )
    async def auth(request: Request, path: str) -> Response:
        return await _forward(request)

    return router


def _dev_token_router(settings: Settings) -> APIRouter:
    """The development issuer's routes; it is installed only with the front door's ``dev-issuer`` extra."""
    try:
        from relearn.dev_issuer import DevIssuer, dev_token_router
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on how the image was built
        raise RuntimeError(
            "FRONT_DOOR_DEV_ISSUER_ENABLED=true, but this front door was installed without its dev-issuer "
            "extra (relearn-dev-issuer): build the dev-issuer image (docker-bake.hcl) or turn the issuer off"
        ) from exc
    return dev_token_router(DevIssuer.from_settings(settings))


def create_app(settings: Settings | None = None, *, http: httpx.AsyncClient | None = None) -> FastAPI:
    """Build the front door; tests may pass an ``httpx.AsyncClient`` wired to in-process services."""
    settings = settings or Settings()
    configure_logging("front-door", settings.log_level)
    settings.check_dev_issuer()
    if settings.mounts_dev_issuer and settings.environment == "production":
        logging.getLogger(__name__).warning(
            "INSECURE: the development token issuer runs in production "
            "(FRONT_DOOR_INSECURE_DEV_ISSUER_IN_PRODUCTION=true): anyone reaching it can mint every scope"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
        lean = UpstreamClient() if http is None else None
        if lean is not None:  # FHIR requests take the lean client (upstream.py; docs/performance.md)
            use_lean_client(client, lean)
        app.state.http = client
        app.state.routing = RoutingTable(
            settings.upstreams, client, missing_retry_s=settings.capability_retry_s
        )
        app.state.rest = RestRoutes(
            settings.upstreams,
            client,
            reserved=reserved,
            websocket_routes=settings.websocket_routes,
        )
        try:
            yield
        finally:
            if http is None:
                await client.aclose()
            if lean is not None:
                await lean.aclose()

    app = FastAPI(
        title="Relearn front door",
        description="One FHIR R4 base URL for every Relearn resource type, and one host for the services' "
        "REST APIs and WebSockets (GET /apis lists them, with each service's OpenAPI document).",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.state.max_bundle_entries = settings.max_bundle_entries
    # A client that leaves cancels its call to the service, which then rolls the work back.
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(
        RequestGuard,
        limits=settings_limits(settings, [("/ingest/", settings.ingest_max_body_bytes)]),
    )
    fhir_router, fhir_type_routes = _fhir_routes(settings)
    own = [_health_routes()]
    if settings.authorization_url:
        own.append(_authorization_routes(settings, settings.authorization_url))
    own.append(fhir_router)
    if settings.mounts_dev_issuer:
        own.append(_dev_token_router(settings))
    own.append(_api_routes(settings))
    for router in own:
        app.include_router(router)
        if router is fhir_router:
            app.router.routes.extend(fhir_type_routes)
    # Paths the front door answers itself (and FastAPI's /docs, /openapi.json) are never routed.
    reserved = _own_segments([*app.routes, *(route for router in own for route in router.routes)])
    app.include_router(_passthrough_routes(settings))
    install_error_docs(
        app,
        open_paths={"/healthz", "/readyz", "/fhir/metadata", "/apis", "/apis/{service}/openapi.json"},
        other_errors={
            "/auth/token",
            "/auth/jwks.json",
            "/.well-known/smart-configuration",
            "/fhir/.well-known/smart-configuration",
            "/auth/{path}",
        },
    )
    install_merged_docs(
        app,
        lambda: _services_docs(app),
        {"504": f"The service did not answer within {settings.upstream_timeout_s:g}s (Retry-After)"},
    )
    return app


async def _services_docs(app: FastAPI) -> tuple[Documents, Included]:
    """The services' OpenAPI documents and which of their paths this host serves (FHIR: by type; REST: by
    the first segment it routes to them); ``/openapi.json`` lists them with the front door's own."""
    rest: RestRoutes = app.state.rest
    await rest.refresh()
    documents = {name: spec for name in rest.services() if (spec := rest.spec_of(name)) is not None}
    served: set[tuple[str, str]] = set()
    for name, spec in documents.items():
        for path in spec.get("paths", {}):
            fhir = path == "/fhir" or (path.startswith("/fhir/") and path != "/fhir/metadata")
            if fhir or await rest.service_for(path) == name:
                served.add((name, path))
    return documents, lambda name, path: (name, path) in served
