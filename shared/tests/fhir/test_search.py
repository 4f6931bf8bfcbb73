"""Search semantics over one small data set, on PostgreSQL and on the SQLite default."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from relearn.shared.fhir.dates import format_instant, now_ms

if TYPE_CHECKING:
    from shared.tests.fhir.conftest import Api

LOINC = "http://loinc.org"


@dataclass
class Data:
    p: str  # the patient with six observations
    q: str  # another patient
    ids: dict[str, str]  # name -> Observation id
    before: str  # an instant before any of it was stored


@pytest.fixture(scope="module")
def data(any_api: Api) -> Data:
    api = any_api
    p, q = api.new_patient(), api.new_patient()
    for pid, name in (
        (p, {"given": ["Zoë"], "family": "Ångström"}),
        (q, {"given": ["Peter"], "family": "Chalmers"}),
    ):
        r = api.call(
            "PUT", f"/fhir/Patient/{pid}", body={"resourceType": "Patient", "id": pid, "name": [name]}
        )
        assert r.status_code == 201
    before = format_instant(now_ms())
    time.sleep(0.002)  # lastUpdated has millisecond precision: keep "before" strictly earlier
    ob = api.observation
    ids = {
        "o1": api.create(ob(p, effective="2013-04-02", category=[_vital()]))["id"],
        "o2": api.create(ob(p, effective="2013-04-20T10:00:00Z", value=Decimal(70), status="preliminary"))[
            "id"
        ],
        "o3": api.create(ob(p, code="29463-7", effective="2013-05-01", value=Decimal(100)))["id"],
        "o4": api.create(
            ob(
                p,
                system="",
                code="local-1",
                effective={"start": "2013-03-28", "end": "2013-04-03"},
                value=None,
            )
        )["id"],
        "o5": api.create(ob(p, system="http://other.org", effective="2014"))["id"],
        "q1": api.create(ob(q, effective="2013-04-02"))["id"],
    }
    panel = ob(p, code="85353-1", effective="2013-04-02", value=None)
    panel["hasMember"] = [
        {"reference": f"Observation/{ids['o1']}"},
        {"reference": f"Observation/{ids['o2']}"},
    ]
    ids["panel"] = api.create(panel)["id"]
    return Data(p, q, ids, before)


def _vital() -> dict[str, Any]:
    return {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
        ]
    }


def _names(data: Data, ids: list[str]) -> set[str]:
    by_id = {v: k for k, v in data.ids.items()}
    return {by_id.get(i, i) for i in ids}


def find(api: Api, data: Data, params: dict[str, Any] | list[tuple[str, str]]) -> set[str]:
    """Names of the matching observations of patient p (plus q's, when a test asks for them)."""
    return _names(data, api.search_ids("Observation", params))


def mine(api: Api, data: Data, **params: str) -> set[str]:
    return find(api, data, {"patient": data.p, **params})


def test_token_forms(any_api: Api, data: Data) -> None:
    api = any_api
    assert mine(api, data, code=f"{LOINC}|8302-2") == {"o1", "o2"}
    assert mine(api, data, code="8302-2") == {"o1", "o2", "o5"}
    assert mine(api, data, code="|local-1") == {"o4"}
    assert mine(api, data, code="http://other.org|") == {"o5"}
    assert mine(api, data, code="8302-2,29463-7") == {"o1", "o2", "o3", "o5"}  # comma: OR
    assert mine(api, data, status="preliminary") == {"o2"}
    assert mine(api, data, **{"status:not": "final"}) == {"o2"}
    assert mine(api, data, category="vital-signs") == {"o1"}


def test_repeated_parameters_are_anded(any_api: Api, data: Data) -> None:
    params = [("patient", data.p), ("code", "8302-2"), ("status", "final")]
    assert find(any_api, data, params) == {"o1", "o5"}


def test_reference_forms(any_api: Api, data: Data) -> None:
    api = any_api
    everything = {"o1", "o2", "o3", "o4", "o5", "panel"}
    assert find(api, data, {"patient": data.p}) == everything
    assert find(api, data, {"subject": f"Patient/{data.p}"}) == everything
    assert find(api, data, {"subject:Patient": data.p}) == everything
    assert find(api, data, {"subject": f"{api.base}/Patient/{data.p}"}) == everything  # our own base URL
    assert find(api, data, {"patient": f"Patient/{data.q}"}) == {"q1"}
    assert find(api, data, {"has-member": f"Observation/{data.ids['o1']}"}) == {"panel"}


def test_date_prefixes_and_precision(any_api: Api, data: Data) -> None:
    api = any_api
    assert mine(api, data, date="2013-04") == {"o1", "o2", "panel"}  # the whole month
    assert mine(api, data, date="2013-04-02") == {"o1", "panel"}
    assert mine(api, data, date="ge2013-04-10") == {"o2", "o3", "o5"}
    assert mine(api, data, date="lt2013-04-01") == {"o4"}  # the period started in March
    assert mine(api, data, date="sa2013-04-02") == {"o2", "o3", "o5"}
    assert mine(api, data, date="eb2013-04-02") == set()  # o4 ends on 3 April
    assert mine(api, data, date="ne2013-04") == {"o3", "o4", "o5"}
    assert find(api, data, [("patient", data.p), ("date", "gt2013-04-02"), ("date", "lt2013-05")]) == {
        "o2",
        "o4",
    }
    assert mine(api, data, date="2013-04-20T12:00:00+02:00") == {"o2"}  # the same instant as 10:00Z
    assert mine(api, data, date="2013-04-20T10:00:00+02:00") == set()
    assert mine(api, data, date="2013-04-20T10:00") == {"o2"}  # minute precision


def test_last_updated_and_id(any_api: Api, data: Data) -> None:
    api = any_api
    assert len(mine(api, data, _lastUpdated=f"gt{data.before}")) == 6
    assert mine(api, data, _lastUpdated=f"lt{data.before}") == set()
    assert find(api, data, {"_id": f"{data.ids['o1']},{data.ids['o3']}"}) == {"o1", "o3"}


def test_sort(any_api: Api, data: Data) -> None:
    api = any_api
    desc = api.search_ids("Observation", {"patient": data.p, "_sort": "-date"})
    names = [_names(data, [i]).pop() for i in desc]
    assert names[:3] == ["o5", "o3", "o2"] and set(names[3:5]) == {"o1", "panel"} and names[5] == "o4"
    asc = api.search_ids("Observation", {"patient": data.p, "_sort": "date,_id"})
    names = [_names(data, [i]).pop() for i in asc]
    assert names[0] == "o4" and names[-3:] == ["o2", "o3", "o5"]
    by_id = api.search_ids("Observation", {"patient": data.p, "_sort": "-_id"})
    assert by_id == sorted(by_id, reverse=True)


def test_paging_follows_next_until_exhausted(any_api: Api, data: Data) -> None:
    api = any_api
    bundle = api.search("Observation", {"patient": data.p, "_count": "2", "_sort": "_lastUpdated"})
    assert bundle["type"] == "searchset" and bundle["total"] == 6
    relations = {link["relation"] for link in bundle["link"]}
    assert relations == {"self", "first", "next", "last"}
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        assert len(bundle["entry"]) <= 2
        for entry in bundle["entry"]:
            assert entry["fullUrl"] == f"{api.base}/Observation/{entry['resource']['id']}"
            assert entry["search"]["mode"] == "match"
            seen.append(entry["resource"]["id"])
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        if pages > 1:
            assert "previous" in links
        if "next" not in links:
            break
        assert links["next"].startswith(f"{api.base}/Observation?")
        r = api.get(links["next"])
        assert r.status_code == 200
        bundle = api.json(r)
    assert pages == 3
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 6


def test_count_is_capped(any_api: Api, data: Data) -> None:
    bundle = any_api.search("Observation", {"patient": data.p, "_count": "5000"})
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert parse_qs(urlsplit(self_link).query)["_count"] == ["1000"]


def test_summary_count_and_total_none(any_api: Api, data: Data) -> None:
    api = any_api
    counted = api.search("Observation", {"patient": data.p, "_summary": "count"})
    assert counted["total"] == 6 and "entry" not in counted
    untotalled = api.search("Observation", {"patient": data.p, "_total": "none"})
    assert "total" not in untotalled and len(untotalled["entry"]) == 6


def test_elements_subset(any_api: Api, data: Data) -> None:
    bundle = any_api.search("Observation", {"_id": data.ids["o1"], "_elements": "status,value"})
    resource = bundle["entry"][0]["resource"]
    assert set(resource) == {"resourceType", "id", "meta", "status", "valueQuantity"}
    assert resource["valueQuantity"]["value"] == Decimal("66.899999999999991")
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "SUBSETTED",
    } in resource["meta"]["tag"]


def test_summary_true_and_data(any_api: Api) -> None:
    api = any_api
    obs = api.observation(api.new_patient(), note=[{"text": "not a summary element"}])
    obs["text"] = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">narrative</div>'}
    rid = api.create(obs)["id"]
    summary = api.search("Observation", {"_id": rid, "_summary": "true"})["entry"][0]["resource"]
    assert {"status", "code", "subject", "valueQuantity"} <= set(summary)
    assert "note" not in summary and "text" not in summary
    assert summary["meta"]["tag"][-1]["code"] == "SUBSETTED"
    data = api.search("Observation", {"_id": rid, "_summary": "data"})["entry"][0]["resource"]
    assert "text" not in data and "note" in data


def test_include_and_revinclude(any_api: Api, data: Data) -> None:
    api = any_api
    bundle = api.search("Observation", {"_id": data.ids["panel"], "_include": "Observation:has-member"})
    modes = {e["resource"]["id"]: e["search"]["mode"] for e in bundle["entry"]}
    assert modes == {data.ids["panel"]: "match", data.ids["o1"]: "include", data.ids["o2"]: "include"}
    assert bundle["total"] == 1
    with_patient = api.search("Observation", {"_id": data.ids["o1"], "_include": "Observation:patient"})
    assert [e["fullUrl"] for e in with_patient["entry"] if e["search"]["mode"] == "include"] == [
        f"{api.base}/Patient/{data.p}"
    ]
    rev = api.search("Patient", {"_id": data.p, "_revinclude": "Observation:patient"})
    included = {e["resource"]["id"] for e in rev["entry"] if e["search"]["mode"] == "include"}
    assert _names(data, sorted(included)) == {"o1", "o2", "o3", "o4", "o5", "panel"}


def test_string_search(any_api: Api, data: Data) -> None:
    api = any_api

    def patients(**params: str) -> set[str]:
        return set(api.search_ids("Patient", {"_id": f"{data.p},{data.q}", **params}))

    assert patients(name="zoe") == {data.p}  # case and accents ignored, starts-with
    assert patients(name="ANGS") == {data.p}
    assert patients(family="chalm") == {data.q}
    assert patients(**{"name:exact": "Zoë"}) == {data.p}
    assert patients(**{"name:exact": "zoë"}) == set()
    assert patients(**{"name:contains": "gstr"}) == {data.p}
    assert patients(name="oe") == set()


def test_quantity_and_missing(any_api: Api, data: Data) -> None:
    api = any_api
    assert mine(api, data, **{"value-quantity": "gt68"}) == {"o2", "o3"}
    assert mine(api, data, **{"value-quantity": "ge70|http://unitsofmeasure.org|[in_i]"}) == {"o2", "o3"}
    assert mine(api, data, **{"value-quantity": "66.9"}) == {"o1", "o5"}  # [66.85, 66.95)
    assert mine(api, data, **{"value-quantity:missing": "true"}) == {"o4", "panel"}


def test_post_search_matches_get(any_api: Api, data: Data) -> None:
    api = any_api
    r = api.client.post(
        "/fhir/Observation/_search",
        content=f"patient={data.p}&code=8302-2",
        headers={"Authorization": "Bearer system", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    ids = [e["resource"]["id"] for e in api.json(r)["entry"]]
    assert _names(data, ids) == mine(api, data, code="8302-2") == {"o1", "o2", "o5"}


def test_unknown_parameters_strict_and_lenient(any_api: Api, data: Data) -> None:
    api = any_api
    lenient = api.search("Observation", {"patient": data.p, "foo": "bar"})
    assert lenient["total"] == 6
    self_link = next(link["url"] for link in lenient["link"] if link["relation"] == "self")
    assert "foo" not in self_link and data.p in self_link
    outcome = [e for e in lenient["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["expression"] == ["foo"]

    strict = api.get(
        "/fhir/Observation", params={"patient": data.p, "foo": "bar"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    issue = api.json(strict)["issue"][0]
    assert issue["expression"] == ["foo"] and "foo" in issue["diagnostics"]
    modifier = api.get(
        "/fhir/Observation", params={"code:below": "8302"}, headers={"Prefer": "handling=strict"}
    )
    assert modifier.status_code == 400


def test_malformed_values_are_400(any_api: Api) -> None:
    for params in ({"date": "2013-13"}, {"_count": "-1"}, {"value-quantity": "abc"}, {"_summary": "maybe"}):
        r = any_api.get("/fhir/Observation", params=params)
        assert r.status_code == 400, params
        assert any_api.json(r)["resourceType"] == "OperationOutcome"


def test_total_is_counted_only_when_cheap_or_asked(
    any_api: Api, data: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16: ``Bundle.total`` never counts a large result unless ``_total=accurate`` asks for it. With the
    count cap lowered to 1 row past the page, the six observations are "large" for a page of 2."""
    from relearn.shared.fhir import store

    monkeypatch.setattr(store, "TOTAL_COUNT_CAP", 1)
    api = any_api
    small = api.search("Observation", {"patient": data.p})  # the page holds everything: total for free
    assert small["total"] == 6
    last = api.search("Observation", {"patient": data.p, "_count": "4", "_getpagesoffset": "4"})
    assert last["total"] == 6 and len(last["entry"]) == 2
    within = api.search("Observation", {"patient": data.p, "_count": "5"})  # 6 <= 5 + 1: counted exactly
    assert within["total"] == 6
    large = api.search("Observation", {"patient": data.p, "_count": "2"})  # past the cap: no total
    assert "total" not in large and len(large["entry"]) == 2
    assert any(link["relation"] == "next" for link in large["link"])
    accurate = api.search("Observation", {"patient": data.p, "_count": "2", "_total": "accurate"})
    assert accurate["total"] == 6
    estimate = api.search("Observation", {"patient": data.p, "_count": "2", "_total": "estimate"})
    assert estimate["total"] >= 4  # PostgreSQL: the planner's figure, at least what was counted
    none = api.search("Observation", {"patient": data.p, "_total": "none"})
    assert "total" not in none
