"""Audit trail (issue 14): what one AuditEvent costs a request, PostgreSQL, in process (TestClient).

The evaluation service's app twice, once as built (every access audited: a compact record in the outbox, in
the request's transaction) and once with ``AuditMiddleware`` taken out (no audit); the variants alternate.
1. ``GET /fhir/Condition/{id}`` and 2. ``GET /fhir/Condition?patient=..`` latency for each.
3. The request path's own CPU: building the outbox row of one access (``relearn.shared.audit.encoded``).
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

from fastapi.testclient import TestClient

from relearn.devtools.apps import make_issuer, service_app
from relearn.devtools.bench import BenchContext, report
from relearn.evaluation.config import Settings
from relearn.evaluation.main import create_app
from relearn.shared.audit import AuditMiddleware, encoded
from relearn.shared.audit_context import AuditContext

_CONDITION: dict[str, Any] = {
    "resourceType": "Condition",
    "clinicalStatus": {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
    },
    "verificationStatus": {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
        ]
    },
    "category": [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                    "code": "problem-list-item",
                }
            ]
        }
    ],
    "code": {"text": "bench"},
    "subject": {"reference": "Patient/bench"},
}


def run(ctx: BenchContext) -> None:
    n = max(20, int(300 * ctx.scale))
    issuer = make_issuer(Path(mkdtemp()))
    samples: dict[tuple[str, str], list[float]] = {}
    for variant in ("audited", "no audit", "audited", "no audit"):
        app = service_app(
            "relearn.evaluation",
            Settings,
            create_app,
            database_url=ctx.pg_database("bench_audit"),
            bootstrap=ctx.broker.bootstrap,
            jwks=issuer.publish(),
            run_workers=False,
        )
        if variant == "no audit":
            app.user_middleware = [m for m in app.user_middleware if m.cls is not AuditMiddleware]
        auth = {"Authorization": f"Bearer {issuer.mint('relearn-dev', 'system/*.read system/*.write')}"}
        with TestClient(app) as client:
            cid = client.post("/fhir/Condition", json=_CONDITION, headers=auth).json()["id"]
            for what, url in (
                ("read", f"/fhir/Condition/{cid}"),
                ("search", "/fhir/Condition?patient=bench"),
            ):
                for _ in range(20):  # warm up
                    client.get(url, headers=auth)
                for _ in range(n):
                    started = time.perf_counter()
                    client.get(url, headers=auth)
                    samples.setdefault((what, variant), []).append(time.perf_counter() - started)
    for (what, variant), latencies in sorted(samples.items()):
        report(f"GET {what}, {variant}", count=len(latencies), seconds=sum(latencies), latencies_s=latencies)
    access = AuditContext(
        kind="http",
        method="GET",
        path="/fhir/Condition",
        query=b"patient=a,b",
        client_host="127.0.0.1",
        request_id="r" * 32,
        patients={"a", "b"},
        service="evaluation",
        base_url="http://127.0.0.1:8080/fhir",
    )
    count = 20000
    started = time.perf_counter()
    for _ in range(count):
        encoded(access, 200, "evaluation", "http://127.0.0.1:8080/fhir")
    report("audit record built (request-path CPU)", count=count, seconds=time.perf_counter() - started)
