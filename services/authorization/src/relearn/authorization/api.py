"""HTTP of the authorization server: SMART discovery, JWKS, token, introspection, revocation, EHR launch
contexts and the authorization endpoint with its login and consent page.

OAuth endpoints answer RFC 6749 §5.2 JSON errors (not OperationOutcomes): that is what OAuth clients parse.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import math
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from relearn.authorization.config import Settings
from relearn.authorization.domain.throttle import LoginThrottle
from relearn.authorization.schemas import (
    IntrospectionResponse,
    LaunchResponse,
    SmartConfiguration,
    TokenResponse,
    oauth_error_responses,
)
from relearn.authorization.service import (
    Authorization,
    AuthorizeError,
    AuthorizeRequest,
    ClientCredentials,
    OAuthError,
)
from relearn.shared.service import SessionDep

_MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {
    **_NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
# The sign-in form's anti-forgery token: a random value in a cookie only this site's pages send back
# (SameSite=Strict) and in the form; a post without both equal is refused (login CSRF).
_CSRF_COOKIE = "relearn_signin"
_CSRF_FIELD = "_csrf"


def _form_schema(properties: dict[str, str], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": required,
                        "properties": {
                            n: {"type": "string", "description": d} for n, d in properties.items()
                        },
                    }
                }
            },
        }
    }


_CLIENT_AUTH = {
    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer (private_key_jwt)",
    "client_assertion": "the signed JWT (RS384/ES384; iss=sub=client_id, aud=token URL, exp <= 5 min, jti)",
    "client_id": "public apps; optional with an assertion",
    "client_secret": "development only (or HTTP Basic)",
}


class _Cors:
    def __init__(self, settings: Settings) -> None:
        self.origins = settings.cors_origins

    def headers(self, request: Request) -> dict[str, str]:
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if "*" in self.origins:
            return {"Access-Control-Allow-Origin": "*"}
        if origin in self.origins:
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {}

    def preflight(self, request: Request) -> Response:
        headers = self.headers(request)
        if headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": "Authorization, Content-Type",
                    "Access-Control-Max-Age": "600",
                }
            )
        return Response(status_code=204, headers=headers)


def _error(exc: OAuthError, extra: dict[str, str] | None = None) -> JSONResponse:
    headers = {**_NO_STORE, **(extra or {})}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="relearn"'
    return JSONResponse(exc.to_json(), status_code=exc.status_code, headers=headers)


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "the request body is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "the body is not a valid form") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.2: parameters must not repeat
            raise OAuthError("invalid_request", f"parameter {name!r} is given more than once")
        form[name] = value
    return form


def _credentials(request: Request, form: dict[str, str]) -> ClientCredentials:
    """The client's authentication: HTTP Basic, or client_secret / client_assertion in the form."""
    authorization = request.headers.get("authorization")
    if authorization is not None:
        if "client_secret" in form or "client_assertion" in form:
            raise OAuthError("invalid_request", "use one client authentication method, not several")
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError("invalid_client", "only HTTP Basic client authentication goes in Authorization")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials") from None
        raw_id, sep, raw_secret = decoded.partition(":")
        if not sep:
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials")
        client_id = unquote_plus(raw_id)
        if form.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the HTTP Basic user")
        return ClientCredentials(client_id=client_id, client_secret=unquote_plus(raw_secret))
    return ClientCredentials(
        client_id=form.get("client_id") or None,
        client_secret=form.get("client_secret"),
        assertion_type=form.get("client_assertion_type"),
        assertion=form.get("client_assertion"),
    )


def auth_router(authz: Authorization, settings: Settings) -> APIRouter:
    # Per user name only: behind the front door every caller has the front door's address, so a count per
    # address would let 50 bad tries lock everyone out.
    per_user = LoginThrottle()
    secure_cookie = settings.environment not in ("development", "test")

    def _sign_in_page(
        request: Request, pending: AuthorizeRequest, message: str | None, status_code: int = 200
    ) -> HTMLResponse:
        """The sign-in and consent page with its anti-forgery token (the cookie's, or a new one)."""
        token = request.cookies.get(_CSRF_COOKIE) or secrets.token_urlsafe(32)
        page = HTMLResponse(
            _consent_page(pending, message, token), status_code=status_code, headers=_PAGE_HEADERS
        )
        page.set_cookie(
            _CSRF_COOKIE,
            token,
            max_age=3600,
            path="/auth",
            secure=secure_cookie,
            httponly=True,
            samesite="strict",
        )
        return page

    router = APIRouter(tags=["authorization"])
    cors = _Cors(settings)

    async def discovery(request: Request, session: SessionDep) -> JSONResponse:
        scopes = await run_in_threadpool(authz.scopes_supported, session)
        headers = {"Cache-Control": "public, max-age=60", **cors.headers(request)}
        return JSONResponse(authz.smart_configuration(scopes), headers=headers)

    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        router.add_api_route(
            path,
            discovery,
            methods=["GET"],
            response_model=SmartConfiguration,
            summary="SMART on FHIR configuration (at the root and at the FHIR base)",
        )

    @router.get("/auth/jwks.json", summary="The issuer's public signing keys (RS384/ES384)")
    async def jwks(request: Request) -> JSONResponse:
        keys = await run_in_threadpool(authz.keys.public_jwks)
        return JSONResponse(keys, headers={"Cache-Control": "public, max-age=300", **cors.headers(request)})

    @router.options("/auth/token", include_in_schema=False)
    async def token_preflight(request: Request) -> Response:
        return cors.preflight(request)

    @router.post(
        "/auth/token",
        summary="Token endpoint: client_credentials (Backend Services), authorization_code, refresh_token",
        response_model=TokenResponse,
        responses=oauth_error_responses(400, 401),
        openapi_extra=_form_schema(
            {
                "grant_type": "client_credentials | authorization_code | refresh_token",
                "scope": "requested scopes",
                "code": "authorization_code",
                "redirect_uri": "authorization_code",
                "code_verifier": "authorization_code (PKCE)",
                "refresh_token": "refresh_token",
                "device": "a device client's bound Device id",
                **_CLIENT_AUTH,
            },
            ["grant_type"],
        ),
    )
    async def token(request: Request, session: SessionDep) -> JSONResponse:
        extra = cors.headers(request)
        try:
            form = await _read_form(request)
            answer = await run_in_threadpool(authz.token, session, _credentials(request, form), form)
        except OAuthError as exc:
            return _error(exc, extra)
        return JSONResponse(answer, headers={**_NO_STORE, **extra})

    @router.post(
        "/auth/introspect",
        summary="Token introspection (RFC 7662); the caller authenticates as a client",
        response_model=IntrospectionResponse,
        responses=oauth_error_responses(400, 401),
        openapi_extra=_form_schema(
            {"token": "the token", "token_type_hint": "ignored", **_CLIENT_AUTH}, ["token"]
        ),
    )
    async def introspect(request: Request, session: SessionDep) -> JSONResponse:
        try:
            form = await _read_form(request)
            token_value = form.get("token")
            if not token_value:
                raise OAuthError("invalid_request", "token is required")

            def run() -> dict[str, Any]:
                caller = authz.authenticate(session, _credentials(request, form))
                return authz.introspect(session, caller, token_value)

            answer = await run_in_threadpool(run)
        except OAuthError as exc:
            return _error(exc)
        return JSONResponse(answer, headers=_NO_STORE)

    @router.post(
        "/auth/revoke",
        summary="Token revocation (RFC 7009): one of the caller's access or refresh tokens",
        responses=oauth_error_responses(400, 401),
        openapi_extra=_form_schema(
            {"token": "the token", "token_type_hint": "ignored", **_CLIENT_AUTH}, ["token"]
        ),
    )
    async def revoke(request: Request, session: SessionDep) -> Response:
        extra = cors.headers(request)
        try:
            form = await _read_form(request)
            token_value = form.get("token")
            if not token_value:
                raise OAuthError("invalid_request", "token is required")

            def run() -> None:
                caller = authz.authenticate(session, _credentials(request, form), allow_public=True)
                authz.revoke(session, caller, token_value)

            await run_in_threadpool(run)
        except OAuthError as exc:
            return _error(exc, extra)
        return Response(status_code=200, headers={**_NO_STORE, **extra})

    @router.options("/auth/revoke", include_in_schema=False)
    async def revoke_preflight(request: Request) -> Response:
        return cors.preflight(request)

    @router.post(
        "/auth/launch",
        summary="EHR launch: register a launch context (patient, encounter), get the opaque launch value",
        response_model=LaunchResponse,
        responses=oauth_error_responses(400, 401, 403),
        openapi_extra=_form_schema(
            {"patient": "Patient id in context", "encounter": "Encounter id in context", **_CLIENT_AUTH}, []
        ),
    )
    async def launch(request: Request, session: SessionDep) -> JSONResponse:
        try:
            form = await _read_form(request)

            def run() -> dict[str, Any]:
                caller = authz.authenticate(session, _credentials(request, form))
                return authz.create_launch(
                    session, caller, form.get("patient") or None, form.get("encounter") or None
                )

            answer = await run_in_threadpool(run)
        except OAuthError as exc:
            return _error(exc)
        return JSONResponse(answer, status_code=201, headers=_NO_STORE)

    def _refused(exc: OAuthError) -> Response:
        location = exc.location() if isinstance(exc, AuthorizeError) else None
        if location is not None:
            return RedirectResponse(location, status_code=303, headers=_NO_STORE)
        return HTMLResponse(_error_page(exc), status_code=400, headers=_PAGE_HEADERS)

    @router.get(
        "/auth/authorize",
        summary="Authorization endpoint (code + PKCE S256): the login and consent page",
        response_class=HTMLResponse,
        responses={
            303: {"description": "back to the app with an error and its state"},
            400: {"description": "bad client or redirect_uri"},
        },
    )
    async def authorize(request: Request, session: SessionDep) -> Response:
        params = dict(request.query_params)
        try:
            pending = await run_in_threadpool(authz.authorize_request, session, params)
        except OAuthError as exc:
            return _refused(exc)
        return _sign_in_page(request, pending, None)

    @router.post(
        "/auth/authorize",
        summary="The authorization request as a form post (authorize-post), or the login and consent answer",
        response_class=HTMLResponse,
        responses={
            303: {"description": "back to the app: code and state, or an error"},
            400: {"description": "bad request"},
        },
    )
    async def authorize_post(request: Request, session: SessionDep) -> Response:
        try:
            form = await _read_form(request)
        except OAuthError as exc:
            return _refused(exc)
        try:
            pending = await run_in_threadpool(authz.authorize_request, session, form)
        except OAuthError as exc:
            return _refused(exc)
        if form.get("_login") != "1":
            return _sign_in_page(request, pending, None)
        cookie = request.cookies.get(_CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie, form.get(_CSRF_FIELD, "")):
            return _sign_in_page(
                request,
                pending,
                "The sign-in form expired or was sent from another site: sign in again.",
                403,
            )
        username = form.get("username", "")[:128]
        user_key = [username.casefold()]
        wait = per_user.retry_after(user_key, time.monotonic())
        if wait is not None:
            retry = str(max(1, math.ceil(wait)))
            page = _sign_in_page(request, pending, f"Too many failed sign-ins: try again in {retry} s.", 429)
            page.headers["Retry-After"] = retry
            return page
        # PBKDF2 takes CPU: off the event loop.
        user = await run_in_threadpool(authz.users.authenticate, username, form.get("password", "")[:1024])
        if user is None:
            per_user.failed(user_key, time.monotonic())
            return _sign_in_page(request, pending, "Unknown user or wrong password.", 401)
        per_user.succeeded(user_key)
        try:
            location = await run_in_threadpool(
                authz.approve,
                session,
                pending,
                user,
                approved=form.get("decision") == "allow",
                patient_choice=form.get("patient") or None,
            )
        except OAuthError as exc:
            return _refused(exc)
        return RedirectResponse(location, status_code=303, headers=_NO_STORE)

    return router


def _error_page(exc: OAuthError) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Authorization error</title></head><body>"
        f"<h1>Authorization error</h1><p>{html.escape(exc.error)}: {html.escape(exc.description)}</p>"
        "</body></html>"
    )


def _consent_page(pending: AuthorizeRequest, message: str | None, csrf: str) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
        for k, v in {**pending.params, _CSRF_FIELD: csrf}.items()
    )
    scopes = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in pending.granted)
    needs_patient = "launch/patient" in pending.granted and (
        pending.launch is None or pending.launch.patient is None
    )
    picker = (
        "<label>Patient id (clinicians; a patient's own record is used for patients) "
        "<input name='patient' maxlength='64'></label><br>"
        if needs_patient
        else ""
    )
    notice = f"<p role='alert' style='color:#a00'>{html.escape(message)}</p>" if message else ""
    name = html.escape(pending.client.name or pending.client.client_id)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Sign in - Relearn</title>"
        "<style>body{font-family:sans-serif;max-width:32em;margin:2em auto}label{display:block;margin:.5em 0}"
        "</style></head><body>"
        f"<h1>Sign in to Relearn</h1>{notice}<p><strong>{name}</strong> asks for:</p><ul>{scopes}</ul>"
        "<form method='post' action='authorize'>"
        f"{hidden}<input type='hidden' name='_login' value='1'>"
        "<label>User name <input name='username' autocomplete='username' maxlength='128' required></label>"
        "<label>Password <input name='password' type='password' autocomplete='current-password' "
        "maxlength='1024' required></label>"
        f"{picker}"
        "<button name='decision' value='allow'>Allow</button> "
        "<button name='decision' value='deny'>Deny</button>"
        "</form></body></html>"
    )
