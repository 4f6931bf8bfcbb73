"""Bounded input: every limit refused with a 4xx OperationOutcome naming it, nothing stored, never a 5xx.

The app runs with small limits (so the tests send small bodies) on PostgreSQL and on SQLite, whose 64-bit
integers overflowed on huge offsets and version ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from relearn.shared.fhir.limits import FhirLimits
from relearn.shared.guard import GuardLimits, json_depth

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api

GUARD = GuardLimits(max_body_bytes=64 * 1024, max_json_depth=32, max_query_bytes=4096)
LIMITS = FhirLimits(max_bundle_entries=10, max_search_params=10, max_search_values=20, max_page_offset=1000)


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def small(
    request: pytest.FixtureRequest,
    pg_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    make_app: Callable[..., Any],
) -> Iterator[Api]:
    from shared.tests.fhir.conftest import Api

    if request.param == "postgresql":
        url = pg_database("limits")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'fhir.db'}"
    app, store, engine = make_app(url, guard=GUARD, limits=LIMITS)
    with TestClient(app) as client:
        yield Api(client, store, engine)
    engine.dispose()


def _issue(api: Api, response: Any) -> dict[str, Any]:
    body = api.json(response)
    assert body["resourceType"] == "OperationOutcome", body
    assert response.headers["content-type"].startswith("application/fhir+json")
    issue: dict[str, Any] = body["issue"][0]
    return issue


def _count(api: Api) -> int:
    return int(api.search("Observation", {"_summary": "count"})["total"])


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(small: Api) -> None:
    before = _count(small)
    big = small.observation(small.new_patient(), note=[{"text": "x" * 70_000}])
    resp = small.call("POST", "/fhir/Observation", body=big)
    assert resp.status_code == 413
    assert "max_body_bytes" in _issue(small, resp)["diagnostics"]
    # Chunked (no Content-Length): counted while reading.
    chunks = iter([b'{"resourceType":"Observation","note":[{"text":"', b"y" * 70_000, b'"}]}'])
    resp = small.client.post(
        "/fhir/Observation",
        content=chunks,
        headers={"Authorization": "Bearer system", "Content-Type": "application/fhir+json"},
    )
    assert resp.status_code == 413
    assert _count(small) == before


def test_a_bundle_over_the_entry_limit_is_413(small: Api) -> None:
    before = _count(small)
    entry = {"resource": small.observation("a"), "request": {"method": "POST", "url": "Observation"}}
    for kind in ("batch", "transaction"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry] * 11}
        resp = small.call("POST", "/fhir", body=bundle)
        assert resp.status_code == 413, resp.text
        issue = _issue(small, resp)
        assert "max_bundle_entries" in issue["diagnostics"] and issue["expression"] == ["Bundle.entry"]
    assert _count(small) == before


def test_deep_json_is_400_not_a_crash(small: Api) -> None:
    for depth in (40, 2000):
        body = (
            '{"resourceType":"Observation","status":"final","code":{"text":"x"},"extension":'
            + ('[{"url":"u","extension":' * depth)
            + "[]"
            + "}]" * depth
            + "}"
        )
        resp = small.call("POST", "/fhir/Observation", body=body)
        assert resp.status_code == 400, resp.text[:200]
        assert "max_json_depth" in _issue(small, resp)["diagnostics"]
    assert json_depth(b'{"a": "[[[[[[[[", "b": [[1]]}') == 3  # brackets in strings do not count


def test_numbers_must_be_finite_doubles(small: Api) -> None:
    before = _count(small)
    for value in ("1e400", "1" + "0" * 400, "-1E+309"):
        text = (
            '{"resourceType":"Observation","status":"final","code":{"text":"x"},'
            '"subject":{"reference":"Patient/a"},"valueQuantity":{"value":' + value + "}}"
        )
        resp = small.call("POST", "/fhir/Observation", body=text)
        assert resp.status_code == 422, (value, resp.text)
        assert _issue(small, resp)["expression"] == ["Observation.valueQuantity.value"]
    # At the edge of the range: accepted.
    ok = small.call(
        "POST",
        "/fhir/Observation",
        body='{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        '"valueQuantity":{"value":1.7976931348623157e308}}',
    )
    assert ok.status_code == 201, ok.text  # the largest finite double is in range
    bundle = (
        '{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"},'
        '"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},'
        '"valueQuantity":{"value":1e400}}}]}'
    )
    resp = small.call("POST", "/fhir", body=bundle)
    assert resp.status_code == 422
    assert _issue(small, resp)["expression"] == ["Bundle.entry[0].resource.valueQuantity.value"]
    assert _count(small) == before + 1


def test_search_size_is_bounded(small: Api) -> None:
    resp = small.get("/fhir/Observation", params=[("code", ",".join(f"c{i}" for i in range(21)))])
    assert resp.status_code == 400 and "max_search_values" in _issue(small, resp)["diagnostics"]
    resp = small.get("/fhir/Observation", params=[("code", f"c{i}") for i in range(11)])
    assert resp.status_code == 400 and "max_search_params" in _issue(small, resp)["diagnostics"]
    resp = small.get("/fhir/Observation", params={"code": "x" * 5000})
    assert resp.status_code == 414 and "max_query_bytes" in _issue(small, resp)["diagnostics"]
    resp = small.get("/fhir/Observation", params={"value-quantity": "1e400"})
    assert resp.status_code == 400


def test_a_nul_in_a_query_value_is_400_naming_the_parameter(small: Api) -> None:
    """PostgreSQL cannot compare text with a NUL (found by make fuzz on a domain route): refused up front."""
    resp = small.get("/fhir/Observation", params={"patient": "p\x00x", "code": "c"})
    assert resp.status_code == 400
    issue = _issue(small, resp)
    assert issue["expression"] == ["patient"] and "NUL" in issue["diagnostics"]
    assert small.get("/fhir/Observation", params={"patient": "p-100"}).status_code == 200


def test_integers_are_bounded(small: Api) -> None:
    obs = small.create(small.observation("a"))
    huge = "99999999999999999999"
    for path, params in [
        ("/fhir/Observation", {"_getpagesoffset": huge}),
        ("/fhir/Observation", {"_getpagesoffset": "1001"}),
        ("/fhir/Observation", {"_count": huge}),
        ("/fhir/Observation", {"_count": "9" * 4000}),
        ("/fhir/Observation/_history", {"_getpagesoffset": huge}),
        (f"/fhir/Observation/{obs['id']}/_history/{huge}", None),
        (f"/fhir/Observation/{obs['id']}/_history/{2**31}", None),
    ]:
        resp = small.get(path, params=params)
        assert resp.status_code == 400, (path, params, resp.text)
        assert _issue(small, resp)["code"] == "invalid"
    resp = small.call("PUT", f"/fhir/Observation/{obs['id']}", body=obs, headers={"If-Match": f'W/"{huge}"'})
    assert resp.status_code == 400
    assert small.get(f"/fhir/Observation/{obs['id']}/_history/7").status_code == 404


def test_header_and_path_errors_are_4xx(small: Api) -> None:
    for header in ("Bearer \xe9", "Bearer  ", "Bearer"):
        resp = small.client.get("/fhir/Observation", headers={"Authorization": header.encode("latin-1")})
        assert resp.status_code == 401, header
        assert resp.headers["www-authenticate"].startswith("Bearer")
    for path in (
        "/fhir/Observation/a%00b",
        "/fhir/Observation/..%2F..%2Fmetadata",
        "/fhir/Observation/%2e%2e",
    ):
        resp = small.get(path)
        assert resp.status_code == 400, path
        assert _issue(small, resp)["expression"] == ["path"]
    # A body without Content-Type is refused, not guessed at.
    resp = small.client.post(
        "/fhir/Observation",
        content=b'{"resourceType":"Observation","status":"final","code":{"text":"x"}}',
        headers={"Authorization": "Bearer system"},
    )
    assert resp.status_code == 415
    assert _issue(small, resp)["expression"] == ["Content-Type"]


def test_the_default_limits_refuse_the_reported_inputs(api: Api) -> None:
    """The inputs of the security review, against the default limits (each was a 5xx before)."""
    nested = (
        '{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueString":'
        + ("[" * 5000 + "]" * 5000)
        + "}"
    )
    resp = api.call("POST", "/fhir/Observation", body=nested)
    assert resp.status_code == 400 and "max_json_depth" in resp.text
    many = ",".join(f"c{i}" for i in range(1100))
    resp = api.get("/fhir/Observation", params={"code": many})
    assert resp.status_code == 400 and "max_search_values" in resp.text
    resp = api.get("/fhir/Observation", params=[("code", f"c{i}") for i in range(1100)])
    assert resp.status_code == 400 and "max_search_params" in resp.text
    device_rate = (
        '{"resourceType":"Observation","status":"final","code":{"text":"rate"},'
        '"valueQuantity":{"value":1' + "0" * 400 + ',"unit":"Hz"}}'
    )
    assert api.call("POST", "/fhir/Observation", body=device_rate).status_code == 422
