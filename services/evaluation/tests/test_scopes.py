"""SMART scopes enforced by a real service (the evaluation service's FHIR API and domain API, real
PostgreSQL, real broker, real signed tokens from the development issuer).

Each v2 letter is enforced on its own: ``c`` create, ``r`` read/vread/instance history, ``u`` update,
``d`` delete, ``s`` search/type history. A filtered scope (``patient/Observation.rs?category=vital-signs``)
never shows or lets a client write another category: not by search, read, vread, history, _include,
_revinclude, nor inside a batch. Batch entries are authorised one by one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relearn.dev_issuer import DevIssuer
from relearn.devtools.apps import make_issuer, service_app
from relearn.devtools.broker import TansuBroker
from relearn.evaluation.config import Settings
from relearn.evaluation.main import create_app

JSON = {"Content-Type": "application/fhir+json"}
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
VITALS = "patient/Observation.rs?category=vital-signs"


@pytest.fixture(scope="module")
def service(
    broker: TansuBroker, pg_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, DevIssuer]]:
    issuer = make_issuer(tmp_path_factory.mktemp("keys"))
    app = service_app(
        "relearn.evaluation",
        Settings,
        create_app,
        database_url=pg_database("evaluation_scopes"),
        bootstrap=broker.bootstrap,
        jwks=issuer.publish(),
    )
    with TestClient(app) as client:
        yield client, issuer


class Fhir:
    """Calls with a token minted for a scope string (and patient)."""

    def __init__(self, client: TestClient, issuer: DevIssuer, scope: str, patient: str | None = None) -> None:
        self.client = client
        self.headers = {
            "Authorization": f"Bearer {issuer.mint('relearn-dev', scope, patient=patient)}",
            **JSON,
        }

    def get(self, path: str, **params: str) -> Any:
        return self.client.get(f"/fhir/{path}", params=params, headers=self.headers)

    def post(self, path: str, body: dict[str, Any], **headers: str) -> Any:
        return self.client.post(f"/fhir/{path}", json=body, headers={**self.headers, **headers})

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.put(f"/fhir/{path}", json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/fhir/{path}", headers=self.headers)


def _obs(patient: str, category: str, code: str = "8867-4", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2026-11-20T10:15:00Z",
        **extra,
    }


@pytest.fixture(scope="module")
def system(service: tuple[TestClient, DevIssuer]) -> Fhir:
    return Fhir(*service, "system/*.cruds")


@pytest.fixture(scope="module")
def data(system: Fhir) -> dict[str, str]:
    """Patient pa: a vital sign, a lab result, a vital-signs panel whose member is the lab result, a lab
    result derived from the vital sign, and one that was a lab result and is now a vital sign; patient
    pb: a vital sign; pc: what tests that create more use."""
    pa, pb = f"pa{uuid.uuid4().hex[:8]}", f"pb{uuid.uuid4().hex[:8]}"

    def create(body: dict[str, Any]) -> str:
        r = system.post("Observation", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    vital = create(_obs(pa, "vital-signs"))
    lab = create(_obs(pa, "laboratory", code="2345-7"))
    panel = create(_obs(pa, "vital-signs", code="85353-1", hasMember=[{"reference": f"Observation/{lab}"}]))
    derived = create(
        _obs(pa, "laboratory", code="2339-0", derivedFrom=[{"reference": f"Observation/{vital}"}])
    )
    changed = create(_obs(pa, "laboratory", code="1234-5"))
    r = system.put(f"Observation/{changed}", {**_obs(pa, "vital-signs", code="1234-5"), "id": changed})
    assert r.status_code == 200, r.text
    other = create(_obs(pb, "vital-signs"))
    return {
        "pa": pa,
        "pb": pb,
        "pc": f"pc{uuid.uuid4().hex[:8]}",  # for tests that create more
        "vital": vital,
        "lab": lab,
        "panel": panel,
        "derived": derived,
        "changed": changed,
        "other": other,
    }


def _ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode}


def _history_ids(bundle: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["resource"]["id"], e["resource"]["meta"]["versionId"])
        for e in bundle.get("entry", [])
        if "resource" in e
    ]


# --- c r u d s, one by one ------------------------------------------------------------------------


def _statuses(fhir: Fhir, system: Fhir, data: dict[str, str]) -> dict[str, int]:
    """What each interaction answers for this token (on a fresh resource, so deletes don't interfere)."""
    pa = data["pc"]
    mine = system.post("Observation", _obs(pa, "vital-signs")).json()["id"]
    fresh = f"new-{uuid.uuid4().hex[:12]}"
    return {
        "create": fhir.post("Observation", _obs(pa, "vital-signs")).status_code,
        "read": fhir.get(f"Observation/{mine}").status_code,
        "vread": fhir.get(f"Observation/{mine}/_history/1").status_code,
        "history-instance": fhir.get(f"Observation/{mine}/_history").status_code,
        "search": fhir.get("Observation", patient=pa).status_code,
        "search-post": fhir.client.post(
            "/fhir/Observation/_search",
            data={"patient": pa},
            headers={"Authorization": fhir.headers["Authorization"]},
        ).status_code,
        "history-type": fhir.get("Observation/_history").status_code,
        "update": fhir.put(f"Observation/{mine}", {**_obs(pa, "vital-signs"), "id": mine}).status_code,
        "update-create": fhir.put(
            f"Observation/{fresh}", {**_obs(pa, "vital-signs"), "id": fresh}
        ).status_code,
        "delete": fhir.delete(f"Observation/{mine}").status_code,
    }


ALL = {
    "create",
    "read",
    "vread",
    "history-instance",
    "search",
    "search-post",
    "history-type",
    "update",
    "update-create",
    "delete",
}
ALLOWED = {
    "c": {"create"},
    "r": {"read", "vread", "history-instance"},
    "u": {"update"},  # an update that would create needs c too
    "d": {"delete"},
    "s": {"search", "search-post", "history-type"},
    "cu": {"create", "update", "update-create"},
    "read": {"read", "vread", "history-instance", "search", "search-post", "history-type"},
    "write": {"create", "update", "update-create", "delete"},
}
OK = {"create": 201, "read": 200, "vread": 200, "history-instance": 200, "search": 200, "search-post": 200,
      "history-type": 200, "update": 200, "update-create": 201, "delete": 204}  # fmt: skip


@pytest.mark.parametrize("permission", list(ALLOWED))
def test_each_letter_is_enforced_on_its_own(
    service: tuple[TestClient, DevIssuer], system: Fhir, data: dict[str, str], permission: str
) -> None:
    fhir = Fhir(*service, f"user/Observation.{permission}")
    statuses = _statuses(fhir, system, data)
    expected = {k: (OK[k] if k in ALLOWED[permission] else 403) for k in ALL}
    assert statuses == expected


def test_other_types_are_not_granted(service: tuple[TestClient, DevIssuer], data: dict[str, str]) -> None:
    fhir = Fhir(*service, "user/Observation.cruds")
    assert fhir.get("Condition", patient=data["pa"]).status_code == 403
    assert fhir.get("Observation", patient=data["pa"]).status_code == 200


def test_conditional_create_without_read_shows_no_body(
    service: tuple[TestClient, DevIssuer], system: Fhir, data: dict[str, str]
) -> None:
    ident = f"urn:uuid:{uuid.uuid4()}"
    body = _obs(data["pc"], "vital-signs", identifier=[{"system": "urn:test", "value": ident}])
    assert system.post("Observation", body).status_code == 201
    create_only = Fhir(*service, "user/Observation.c")
    r = create_only.post("Observation", body, **{"If-None-Exist": f"identifier=urn:test|{ident}"})
    assert r.status_code == 200
    assert r.content == b""


# --- the domain API maps each route to its letter ---------------------------------------------------


def test_domain_routes_need_their_letter(
    service: tuple[TestClient, DevIssuer], evaluation_body: Callable[..., dict[str, Any]]
) -> None:
    client, issuer = service

    def call(method: str, path: str, scope: str, **kw: Any) -> int:
        headers = {"Authorization": f"Bearer {issuer.mint('relearn-dev', scope)}"}
        return int(client.request(method, path, headers=headers, **kw).status_code)

    body = evaluation_body(f"ev{uuid.uuid4().hex[:8]}")
    assert call("POST", "/evaluations", "user/Observation.rus", json=body) == 403
    assert call("POST", "/evaluations", "user/Observation.c user/Condition.c", json=body) == 201
    outcomes = f"/evaluations/outcome-measures?patient={body['patient']}"
    assert call("GET", outcomes, "user/Observation.r") == 403
    assert call("GET", outcomes, "user/Observation.s") == 200
    # A filtered scope cannot be applied by a domain route: refused, not read as the whole type.
    assert call("GET", outcomes, "user/Observation.s?category=vital-signs") == 403


# --- a filtered scope never leaks another category --------------------------------------------------


def test_filtered_search_returns_only_the_category(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    fhir = Fhir(*service, VITALS, patient=data["pa"])
    r = fhir.get("Observation")
    assert r.status_code == 200
    assert _ids(r.json()) == {data["vital"], data["panel"], data["changed"]}
    assert r.json()["total"] == 3
    # Asking for another category finds nothing, and neither does any other criterion.
    assert _ids(fhir.get("Observation", category="laboratory").json()) == set()
    assert _ids(fhir.get("Observation", code="http://loinc.org|2345-7").json()) == set()
    assert _ids(fhir.get("Observation", _id=data["lab"]).json()) == set()
    assert fhir.get("Observation", _summary="count").json()["total"] == 3
    # Another patient's vital signs stay out too (the patient/ compartment still applies).
    assert data["other"] not in _ids(fhir.get("Observation", category="vital-signs").json())


def test_filtered_reads_outside_the_category_are_404(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    fhir = Fhir(*service, VITALS, patient=data["pa"])
    assert fhir.get(f"Observation/{data['vital']}").status_code == 200
    for path in (
        f"Observation/{data['lab']}",
        f"Observation/{data['lab']}/_history/1",
        f"Observation/{data['lab']}/_history",
    ):
        r = fhir.get(path)
        assert r.status_code == 404, path
        assert "laboratory" not in r.text


def test_filtered_history_shows_only_versions_in_the_category(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    fhir = Fhir(*service, VITALS, patient=data["pa"])
    changed = data["changed"]
    # Version 1 was a lab result, version 2 is a vital sign.
    assert _history_ids(fhir.get(f"Observation/{changed}/_history").json()) == [(changed, "2")]
    assert fhir.get(f"Observation/{changed}/_history/1").status_code == 404
    assert fhir.get(f"Observation/{changed}/_history/2").status_code == 200
    type_history = _history_ids(fhir.get("Observation/_history").json())
    assert {i for i, _ in type_history} == {data["vital"], data["panel"], changed}
    assert (changed, "1") not in type_history


def test_filtered_includes_leave_other_categories_out(
    service: tuple[TestClient, DevIssuer], system: Fhir, data: dict[str, str]
) -> None:
    fhir = Fhir(*service, VITALS, patient=data["pa"])
    # Unrestricted, the panel includes its lab member and the vital sign revincludes the derived lab.
    unrestricted = system.get("Observation", _id=data["panel"], _include="Observation:has-member").json()
    assert _ids(unrestricted, "include") == {data["lab"]}
    unrestricted = system.get("Observation", _id=data["vital"], _revinclude="Observation:derived-from").json()
    assert _ids(unrestricted, "include") == {data["derived"]}
    # Under the filtered scope neither is included.
    included = fhir.get("Observation", _id=data["panel"], _include="Observation:has-member").json()
    assert _ids(included) == {data["panel"]} and _ids(included, "include") == set()
    rev = fhir.get("Observation", _id=data["vital"], _revinclude="Observation:derived-from").json()
    assert _ids(rev) == {data["vital"]} and _ids(rev, "include") == set()
    assert "laboratory" not in str(included) + str(rev)


def test_filtered_writes_stay_in_the_category(
    service: tuple[TestClient, DevIssuer], system: Fhir, data: dict[str, str]
) -> None:
    pa = data["pc"]
    fhir = Fhir(*service, "patient/Observation.cruds?category=vital-signs", patient=pa)
    assert fhir.post("Observation", _obs(pa, "laboratory")).status_code == 403
    created = fhir.post("Observation", _obs(pa, "vital-signs"))
    assert created.status_code == 201
    vid = created.json()["id"]
    # Turning a vital sign into a lab result, or touching a lab result, is refused.
    assert fhir.put(f"Observation/{vid}", {**_obs(pa, "laboratory"), "id": vid}).status_code == 403
    lab = system.post("Observation", _obs(pa, "laboratory")).json()["id"]
    assert fhir.put(f"Observation/{lab}", {**_obs(pa, "vital-signs"), "id": lab}).status_code == 403
    assert fhir.delete(f"Observation/{lab}").status_code == 403
    assert system.get(f"Observation/{lab}").json()["category"][0]["coding"][0]["code"] == "laboratory"
    # Conditional writes only ever match inside the filter.
    assert fhir.delete(f"Observation?_id={lab}").status_code == 204  # matches nothing: nothing deleted
    assert system.get(f"Observation/{lab}").status_code == 200
    assert (
        fhir.put(f"Observation/{vid}", {**_obs(pa, "vital-signs", code="8480-6"), "id": vid}).status_code
        == 200
    )
    assert fhir.delete(f"Observation/{vid}").status_code == 204
    # A deletion is in the category of the content it removed: the vital sign's is shown, the lab's never.
    history = fhir.get(f"Observation/{vid}/_history").json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    assert system.delete(f"Observation/{lab}").status_code == 204
    assert fhir.get(f"Observation/{lab}/_history").status_code == 404
    assert fhir.get(f"Observation/{lab}/_history/2").status_code == 404


def test_filter_on_code_with_system(service: tuple[TestClient, DevIssuer], data: dict[str, str]) -> None:
    fhir = Fhir(*service, "user/Observation.rs?code=http://loinc.org|2345-7")
    assert _ids(fhir.get("Observation", patient=data["pa"]).json()) == {data["lab"]}
    assert fhir.get(f"Observation/{data['vital']}").status_code == 404


def test_several_scopes_add_up_and_unfiltered_wins(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    pa = data["pa"]
    both = Fhir(*service, f"{VITALS} patient/Observation.rs?category=laboratory", patient=pa)
    assert _ids(both.get("Observation").json()) == {
        data["vital"], data["lab"], data["panel"], data["derived"], data["changed"]
    }  # fmt: skip
    wide = Fhir(*service, f"{VITALS} patient/Observation.rs", patient=pa)
    assert data["lab"] in _ids(wide.get("Observation").json())
    assert wide.get(f"Observation/{data['lab']}").status_code == 200


def test_unenforceable_filter_grants_nothing(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    # 'date' is not a token parameter and 'nonsense' no parameter at all: such filters match nothing.
    for scope in ("user/Observation.rs?date=2026", "user/Observation.rs?nonsense=1"):
        fhir = Fhir(*service, scope)
        assert _ids(fhir.get("Observation", patient=data["pa"]).json()) == set()
        assert fhir.get(f"Observation/{data['vital']}").status_code == 404


# --- batch and transaction: every entry on its own ---------------------------------------------------


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_batch_entries_are_authorised_one_by_one(
    service: tuple[TestClient, DevIssuer], data: dict[str, str]
) -> None:
    pa = data["pa"]
    fhir = Fhir(*service, "user/Observation.r")
    batch = _bundle(
        "batch",
        {"request": {"method": "GET", "url": f"Observation/{data['vital']}"}},
        {"request": {"method": "GET", "url": f"Observation?patient={pa}"}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": _obs(pa, "vital-signs")},
        {"request": {"method": "DELETE", "url": f"Observation/{data['vital']}"}},
        {"request": {"method": "GET", "url": f"Observation/{data['vital']}/_history"}},
    )
    r = fhir.client.post("/fhir", json=batch, headers=fhir.headers)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == ["200", "403", "403", "403", "200"]


def test_filtered_batch_reads(service: tuple[TestClient, DevIssuer], data: dict[str, str]) -> None:
    fhir = Fhir(*service, VITALS, patient=data["pa"])
    batch = _bundle(
        "batch",
        {"request": {"method": "GET", "url": f"Observation/{data['vital']}"}},
        {"request": {"method": "GET", "url": f"Observation/{data['lab']}"}},
        {"request": {"method": "GET", "url": "Observation?category=laboratory"}},
    )
    r = fhir.client.post("/fhir", json=batch, headers=fhir.headers)
    entries = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "404", "200"]
    assert entries[2]["resource"].get("entry", []) == []


def test_transaction_is_refused_whole_when_one_entry_is_not_allowed(
    service: tuple[TestClient, DevIssuer], system: Fhir, data: dict[str, str]
) -> None:
    pa = data["pc"]
    marker = f"urn:uuid:{uuid.uuid4()}"
    body = _obs(pa, "vital-signs", identifier=[{"system": "urn:test", "value": marker}])
    tx = _bundle(
        "transaction",
        {"request": {"method": "POST", "url": "Observation"}, "resource": body},
        {"request": {"method": "DELETE", "url": f"Observation/{data['vital']}"}},
    )
    fhir = Fhir(*service, "user/Observation.c")
    r = fhir.client.post("/fhir", json=tx, headers=fhir.headers)
    assert r.status_code == 403
    assert system.get("Observation", identifier=f"urn:test|{marker}").json().get("total") == 0
    allowed = Fhir(*service, "user/Observation.cd")
    tx["entry"] = tx["entry"][:1]
    assert allowed.client.post("/fhir", json=tx, headers=allowed.headers).status_code == 200
    filtered = Fhir(*service, "patient/Observation.c?category=laboratory", patient=pa)
    assert filtered.client.post("/fhir", json=tx, headers=filtered.headers).status_code == 403
