"""Every route of every service, generated from the app's own route table, refuses the wrong caller.

For each HTTP route (path parameters filled with ids nobody has) four callers try it: no token (401), a token
whose scopes cover nothing the route needs (403, or 404), another patient's token (403/404, or an empty
answer for a collection that a patient token may search) and a clinic hub's device token (403, or 404 for a
stream it does not send for; ingest routes refuse the empty body). No caller ever gets a 5xx. A new route is
covered the day it is added; the few open ones are listed below with why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app

# Open on purpose: the CapabilityStatement and probes; reference data (the movement-pattern catalogue, the
# session CodeSystems, the subscription topics) for any valid token.
OPEN = {"/fhir/metadata", "/healthz", "/readyz", "/metrics"}
ANY_VALID_TOKEN = ("/catalogue", "/sessions/code-systems", "/subscriptions/topics")
SERVICES = {
    "evaluation": ("relearn.evaluation", "relearn.evaluation.config", "relearn.evaluation.main"),
    "plan": ("relearn.plan", "relearn.plan.config", "relearn.plan.main"),
    "sessions": ("relearn.sessions", "relearn.sessions.config", "relearn.sessions.main"),
    "device-gateway": (
        "relearn.device_gateway",
        "relearn.device_gateway.config",
        "relearn.device_gateway.main",
    ),
    "subscriptions": ("relearn.subscriptions", "relearn.subscriptions.config", "relearn.subscriptions.main"),
    "audit": ("relearn.audit", "relearn.audit.config", "relearn.audit.main"),
    "reports": ("relearn.reports", "relearn.reports.config", "relearn.reports.main"),
}
NOBODY = "nobody-0000"
# Members a body needs beyond its schema's required ones (a cross-field rule), merged into the example.
EXTRA_BODY = {("POST", "/evaluations"): {"pain": 3}}


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return make_issuer(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module", params=sorted(SERVICES))
def app(
    request: pytest.FixtureRequest, pg_database: Callable[[str], str], issuer: DevIssuer
) -> Iterator[tuple[FastAPI, TestClient]]:
    import importlib

    package, config, main = SERVICES[request.param]
    settings_cls = importlib.import_module(config).Settings
    create_app = importlib.import_module(main).create_app
    built = service_app(
        package,
        settings_cls,
        create_app,
        database_url=pg_database(package.rsplit(".", 1)[1]),
        bootstrap="127.0.0.1:1",  # nothing here reaches the broker: no workers, no topics
        jwks=issuer.publish(),
        run_workers=False,
        create_topics=False,
    )
    with TestClient(built) as client:
        yield built, client


def _routes(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) of every HTTP route a caller must be authorized for."""
    out = []
    for route in iter_route_contexts(app.routes):  # through included routers
        if not isinstance(route.original_route, APIRoute) or route.path is None:
            continue
        if route.path in OPEN or route.path.startswith(ANY_VALID_TOKEN):
            continue
        path = re.sub(r"\{[^}:]+(:path)?\}", NOBODY, route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            out.append((method, route.path, path))
    return out


def _example(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0, name: str = "") -> Any:
    """A small instance of an OpenAPI schema (required members only), so that a refusal is about the
    caller, not a malformed body."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return _example(spec["components"]["schemas"][name], spec, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"]
            return _example(options[0], spec, depth + 1) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = [k for k in schema.get("required", []) if k in props]
        return {k: _example(props[k], spec, depth + 1, k) for k in required}
    if kind == "array":
        count = schema.get("minItems", 0)
        return [_example(schema.get("items", {}), spec, depth + 1) for _ in range(count)]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if schema.get("format") == "date-time" or name in ("effective", "start", "end") or name.endswith("Time"):
        return "2026-03-02T09:30:00Z"
    if schema.get("format") == "date":
        return "2026-03-02"
    return NOBODY if "pattern" in schema else "x"


def _body(spec: dict[str, Any], method: str, template: str) -> tuple[bytes, str]:
    """The body (and its Content-Type) a write route is called with."""
    if template.endswith("/_search"):
        return b"", "application/x-www-form-urlencoded"
    fhir = re.fullmatch(r"/fhir/([A-Z][A-Za-z]+)(/\{id\})?", template)
    if fhir:  # a resource of the type, in nobody's compartment (a patient token may not write it)
        resource = {"resourceType": fhir.group(1)}
        if fhir.group(2):
            resource["id"] = NOBODY
        return json.dumps(resource).encode(), "application/fhir+json"
    if template == "/fhir":  # a batch reading one resource
        entry = {"request": {"method": "GET", "url": f"Patient/{NOBODY}"}}
        return json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [entry]}).encode(), (
            "application/fhir+json"
        )
    operation = spec["paths"].get(template, {}).get(method.lower(), {})
    content = operation.get("requestBody", {}).get("content", {})
    schema = (content.get("application/json") or {}).get("schema")
    example = _example(schema, spec) if schema else {}
    if isinstance(example, dict):
        example.update(EXTRA_BODY.get((method, template), {}))
    return json.dumps(example).encode(), "application/json"


def _call(
    client: TestClient, spec: dict[str, Any], method: str, template: str, path: str, token: str | None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body: bytes | None = None
    operation = spec["paths"].get(template, {}).get(method.lower(), {})
    if method in ("POST", "PUT", "PATCH") or "requestBody" in operation:
        body, headers["Content-Type"] = _body(spec, method, template)
    if template.startswith("/fhir/") and "{id}" not in template and method in ("PUT", "DELETE"):
        path += f"?_id={NOBODY}"  # a conditional write needs a criterion
    required = [p for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")]
    if required:
        query = {p["name"]: _example(p.get("schema", {}), spec, name=p["name"]) for p in required}
        path += ("&" if "?" in path else "?") + urlencode(query)
    return client.request(method, path, content=body, headers=headers)


def _nothing_for_them(response: Any) -> bool:
    """A 200 that gives nothing away: an empty collection, or a batch whose every entry was refused."""
    body = response.json()
    if isinstance(body, list):
        return body == []
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return False
    if body.get("type") == "batch-response":
        return all(e["response"]["status"][:1] == "4" for e in body.get("entry", []))
    return not body.get("entry")


def test_every_route_refuses_the_wrong_callers(app: tuple[FastAPI, TestClient], issuer: DevIssuer) -> None:
    fastapi_app, client = app
    spec = fastapi_app.openapi()
    routes = _routes(fastapi_app)
    assert routes, "the route table is empty"
    issuer.clients.register_device("device-gateway-dev", "hub-under-test")
    callers = {
        # A type no service serves (Basic is served now: the subscription topics).
        "wrong scope": issuer.mint("relearn-dev", "system/Binary.read"),
        "another patient": issuer.mint("relearn-dev", "patient/*.read patient/*.write", patient="pat-other"),
        "device": issuer.mint("device-gateway-dev", "system/Observation.write", device="hub-under-test"),
    }
    failures = []
    for method, template, path in routes:
        resp = _call(client, spec, method, template, path, None)
        if resp.status_code != 401 or not resp.headers.get("www-authenticate", "").startswith("Bearer"):
            failures.append(f"{method} {template} without a token: {resp.status_code}")
        for who, token in callers.items():
            resp = _call(client, spec, method, template, path, token)
            status = resp.status_code
            ok = status in (403, 404)
            if who != "device" and status == 200:
                ok = _nothing_for_them(resp)  # a search or batch that finds nothing the caller may see
            if who == "another patient" and method == "DELETE" and status == 204:
                ok = True  # a conditional delete that matches nothing in its compartment deletes nothing
            if who == "device" and template.startswith("/ingest/"):
                ok = 400 <= status < 500 and status != 401  # its own route: the empty body is refused
            if status >= 500 or not ok:
                failures.append(f"{method} {template} with {who}: {status} {resp.text[:160]}")
    assert not failures, "\n".join(failures)


def test_the_route_table_is_not_trivially_small(app: tuple[FastAPI, TestClient]) -> None:
    # Guards the generator: every service has FHIR routes and domain routes behind a token (the audit
    # service: FHIR only, AuditEvent read and searched).
    templates = {template for _, template, _ in _routes(app[0])}
    assert any(t.startswith("/fhir/") for t in templates)
    assert any(not t.startswith("/fhir") for t in templates) or app[0].title == "Relearn audit service"


def test_every_refusal_is_documented_as_an_operation_outcome(app: tuple[FastAPI, TestClient]) -> None:
    """OpenAPI tells the truth: 401/403 on every guarded route (404 with path parameters), the guard's
    400/413/414 (415 with a body), 503 everywhere, and each error body declared as application/fhir+json
    OperationOutcome, not FastAPI's 422 (but /readyz's 503, which is its readiness report)."""
    spec = app[1].get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            expected = {"400", "413", "414", "503"} | ({"415"} if "requestBody" in operation else set())
            if path not in OPEN:
                expected |= {"401", "403"} | ({"404"} if "{" in path else set())
            assert expected <= set(responses), f"{method.upper()} {path}: {sorted(responses)}"
            for status, response in responses.items():
                if (path, status) == ("/readyz", "503"):
                    assert list(response["content"]) == ["application/json"]
                elif status.startswith(("4", "5")):
                    content = response["content"]
                    assert list(content) == ["application/fhir+json"], f"{method.upper()} {path} {status}"
                    assert content["application/fhir+json"]["schema"]["$ref"].endswith("/OperationOutcome")
