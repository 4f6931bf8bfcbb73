"""A FHIR test app per test module: Observation and Patient over a real database.

The token verifier is a boundary fake (real JWT verification is tested in ``tests/auth``):
it maps a few fixed token strings to principals with SMART scopes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from relearn.shared.auth.principal import Principal
from relearn.shared.auth.scopes import parse_scopes
from relearn.shared.db import make_engine
from relearn.shared.fhir import jsontext
from relearn.shared.fhir.capability import capability_statement
from relearn.shared.fhir.definition import ResourceDefinition
from relearn.shared.fhir.errors import Unauthorized
from relearn.shared.fhir.handlers import install_error_handlers
from relearn.shared.fhir.limits import FhirLimits
from relearn.shared.fhir.r4_search import OBSERVATION_PARAMS, PATIENT_PARAMS
from relearn.shared.fhir.router import fhir_router
from relearn.shared.fhir.store import FhirStore
from relearn.shared.guard import GuardLimits, RequestGuard

PUBLIC_BASE = "https://fhir.example.org/r4"
R4_EXAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "fhir-examples" / "R4"

OBSERVATION = ResourceDefinition(
    type="Observation",
    model=Observation,
    search_params=OBSERVATION_PARAMS,
    compartment_param="patient",
    includes=["has-member", "patient", "subject"],
)
PATIENT = ResourceDefinition(
    type="Patient", model=Patient, search_params=PATIENT_PARAMS, compartment_param="_id"
)


def _principal(scope: str, patient: str | None = None) -> Principal:
    return Principal(subject="t", client_id="t", scopes=parse_scopes(scope), patient=patient, raw_scope=scope)


PRINCIPALS = {
    "system": _principal("system/*.read system/*.write"),
    "reader": _principal("system/*.read"),
    "obs-only": _principal("system/Observation.read"),
    "pat-a": _principal("patient/*.read", patient="a"),
    "pat-a-rw": _principal("patient/*.read patient/*.write", patient="a"),
    "vitals-a": _principal("patient/Observation.cruds?category=vital-signs", patient="a"),
    "obs-s": _principal("system/Observation.s"),
    "obs-r": _principal("system/Observation.r"),
}


class FakeVerifier:
    def verify(self, token: str) -> Principal:
        try:
            return PRINCIPALS[token]
        except KeyError:
            raise Unauthorized("Unknown token") from None


@dataclass
class Api:
    """A TestClient with FHIR helpers (tests reach helpers through this fixture object)."""

    client: TestClient
    store: FhirStore
    engine: Engine
    base: str = PUBLIC_BASE

    @staticmethod
    def json(r: httpx.Response) -> Any:
        """The response JSON with decimals kept exact."""
        return jsontext.loads(r.content)

    @staticmethod
    def new_patient() -> str:
        return f"p{uuid.uuid4().hex[:12]}"

    @staticmethod
    def observation(patient: str, **kw: Any) -> dict[str, Any]:
        return observation(patient, **kw)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "system",
        body: bytes | str | dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        params: Any = None,
    ) -> httpx.Response:
        h = {"Authorization": f"Bearer {token}"} if token else {}
        content: bytes | str | None = None
        if body is not None:
            h["Content-Type"] = "application/fhir+json"
            content = jsontext.dumps(body) if isinstance(body, dict) else body
        h.update(headers or {})
        if path.startswith(PUBLIC_BASE):  # follow links minted on the public base
            path = "/fhir" + path[len(PUBLIC_BASE) :]
        response: httpx.Response = self.client.request(
            method, path, content=content, headers=h, params=params
        )
        return response

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def create(self, resource: dict[str, Any], token: str = "system") -> dict[str, Any]:
        r = self.call("POST", f"/fhir/{resource['resourceType']}", body=resource, token=token)
        assert r.status_code == 201, r.text
        created: dict[str, Any] = jsontext.loads(r.content)
        return created

    def search(self, rtype: str, params: Any, token: str = "system", **kw: Any) -> dict[str, Any]:
        r = self.get(f"/fhir/{rtype}", params=params, token=token, **kw)
        assert r.status_code == 200, r.text
        bundle: dict[str, Any] = jsontext.loads(r.content)
        return bundle

    def search_ids(self, rtype: str, params: Any, token: str = "system") -> list[str]:
        bundle = self.search(rtype, params, token)
        return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def build_app(
    url: str, *, guard: GuardLimits | None = None, limits: FhirLimits | None = None
) -> tuple[FastAPI, FhirStore, Engine]:
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    store = FhirStore(base_url=PUBLIC_BASE, limits=limits or FhirLimits())
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestGuard, limits=guard)  # as create_service_app installs it
    capability = capability_statement(
        [OBSERVATION, PATIENT],
        base_url=PUBLIC_BASE,
        software_name="relearn-test",
        version="0.0.1",
        token_url="https://auth.example.org/token",
    )
    app.include_router(fhir_router([OBSERVATION, PATIENT], store, capability=capability))
    app.state.engine = engine
    app.state.token_verifier = FakeVerifier()
    return app, store, engine


@pytest.fixture(scope="session")
def make_app() -> Callable[[str], tuple[FastAPI, FhirStore, Engine]]:
    """Build the test app on a database URL (for tests that add their own routes)."""
    return build_app


@pytest.fixture(scope="module")
def api(pg_database: Callable[[str], str]) -> Iterator[Api]:
    """The test app on a fresh PostgreSQL database (one per test module)."""
    app, store, engine = build_app(pg_database("fhirstore"))
    with TestClient(app) as client:
        yield Api(client, store, engine)
    engine.dispose()


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def any_api(
    request: pytest.FixtureRequest,
    pg_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    """The test app on PostgreSQL, then on the embedded default (a SQLite file)."""
    if request.param == "postgresql":
        url = pg_database("fhirstore")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('fhir') / 'fhir.db'}"
    app, store, engine = build_app(url)
    with TestClient(app) as client:
        yield Api(client, store, engine)
    engine.dispose()


def observation(
    patient: str,
    *,
    code: str = "8302-2",
    system: str = "http://loinc.org",
    effective: str | dict[str, str] | None = "2013-04-02",
    value: Decimal | None = Decimal("66.899999999999991"),
    status: str = "final",
    **extra: Any,
) -> dict[str, Any]:
    """A small Observation for ``Patient/<patient>``."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": system, "code": code} if system else {"code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if isinstance(effective, dict):
        obs["effectivePeriod"] = effective
    elif effective is not None:
        obs["effectiveDateTime"] = effective
    if value is not None:
        obs["valueQuantity"] = {
            "value": value,
            "unit": "in",
            "system": "http://unitsofmeasure.org",
            "code": "[in_i]",
        }
    obs.update(extra)
    return obs
