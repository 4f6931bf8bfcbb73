"""One CarePlan version per decision: the intermediate versions show each decision on its own."""

from __future__ import annotations

from relearn.plan.domain.rules import DEFAULT_RULES, canonical_patch, resolve_rules
from relearn.plan.domain.versions import split_versions
from relearn.plan.events import version_event


def test_a_stage_change_and_an_advance_from_one_event_are_two_versions(clinic, scene) -> None:  # type: ignore[no-untyped-def]
    for day in (0, 2):
        clinic.good_day("knee-extension", day=day, self_rating=3)
    clinic.session("knee-extension", day=4, self_rating=3)
    before = clinic.plan
    outcome = clinic.symptoms(clinic.last_session.session, day=5)
    assert [d.kind for d in outcome.decisions] == ["stage-change", "advance"]

    versions = split_versions(before, outcome.plan)
    assert [v.plan.version for v in versions] == [before.version + 1, before.version + 2]
    first, second = (scene.activity_of(v.plan, "knee-extension") for v in versions)
    assert (
        first.stage.value == "conscious-competence"
        and first.levels == scene.activity_of(before, "knee-extension").levels
    )
    assert second.levels["joints"] == 1
    assert [c.reason for c in versions[-1].plan.history[-2:]] == [d.reason for d in outcome.decisions]
    assert first.last_change is not None and first.last_change.reason == outcome.decisions[0].reason
    events = [version_event(v.plan, v.decision) for v in versions]
    assert [(t, d["versionId"]) for t, d in events] == [
        ("plan.stage-changed.v1", before.version + 1),
        ("plan.progressed.v1", before.version + 2),
    ]


def test_nothing_changed_is_no_version(clinic) -> None:  # type: ignore[no-untyped-def]
    before = clinic.plan
    outcome = clinic.session("knee-extension", day=0)
    assert split_versions(before, outcome.plan) == []


def test_rule_keys_are_accepted_in_either_spelling() -> None:
    rules = resolve_rules(
        DEFAULT_RULES, {"mastery": {"require24HResponse": False, "consecutive_sessions": 2}}
    )
    assert (rules.mastery.require_24h_response, rules.mastery.consecutive_sessions) == (False, 2)
    assert canonical_patch({"mastery": {"require_24h_response": False, "maxPian": 1}}) == {
        "mastery": {"require24HResponse": False, "maxPian": 1}
    }
