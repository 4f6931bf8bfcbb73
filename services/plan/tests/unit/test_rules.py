"""Rules are data with the brief's defaults; overrides are validated whole."""

from __future__ import annotations

import pytest

from relearn.plan.domain.catalogue import Catalogue
from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.progression import activity_rules
from relearn.plan.domain.rules import DEFAULT_RULES, RuleError, dual_task_cost, pain_zone, resolve_rules
from relearn.plan.domain.state import PlanState, RuleOverrides


def test_defaults_are_the_briefs() -> None:
    r = DEFAULT_RULES
    assert r.mastery.consecutive_sessions == 3
    assert r.mastery.max_pain == 2  # Silbernagel 2007: 0-2 safe
    assert r.mastery.require_24h_response
    assert r.symptoms.acceptable_pain_max == 5  # above 5: high risk
    assert r.symptoms.relative_to_baseline and r.symptoms.next_day_back_to_baseline
    assert r.symptoms.failed_advances_before_review == 2
    assert (r.load.reps_over_target, r.load.consecutive_sessions) == (2, 2)
    assert r.load.max_increase_pct == 10
    assert (r.stages.retention_min_hours, r.stages.retention_max_hours) == (20, 72)
    assert r.stages.max_dual_task_cost_pct == 10
    assert r.stages.on_advance == "conscious-competence"
    assert (r.safety.fall_risk_tug_s, r.safety.fall_risk_berg_below) == (13.5, 45)
    assert r.advance.dimension_order is None  # all six, in the brief's order


def test_pain_zones_follow_silbernagel() -> None:
    assert [pain_zone(p, DEFAULT_RULES) for p in (0, 2, 3, 5, 6, 10)] == [
        "safe",
        "safe",
        "acceptable",
        "acceptable",
        "unacceptable",
        "unacceptable",
    ]


def test_pain_is_judged_against_the_patients_baseline_too() -> None:
    # A patient at 4/10 before every session: 4 after is their baseline, not a reason to hold.
    assert pain_zone(4, DEFAULT_RULES, baseline=4) == "safe"
    assert pain_zone(5, DEFAULT_RULES, baseline=4) == "acceptable"  # a rise, within the acceptable zone
    assert pain_zone(6, DEFAULT_RULES, baseline=5) == "unacceptable"  # above 5 is high risk whatever
    assert pain_zone(2, DEFAULT_RULES, baseline=0) == "safe"
    assert pain_zone(3, DEFAULT_RULES, baseline=0) == "acceptable"
    absolute = resolve_rules(DEFAULT_RULES, {"symptoms": {"relativeToBaseline": False}})
    assert pain_zone(4, absolute, baseline=4) == "acceptable"


def test_dual_task_cost_is_positive_when_worse_under_the_dual_task() -> None:
    assert dual_task_cost(1.2, 1.0) == pytest.approx(16.667, abs=1e-3)  # gait speed drops
    assert dual_task_cost(2.0, 3.0, lower_is_better=True) == pytest.approx(50.0)  # sway grows
    assert dual_task_cost(2.0, 1.9, lower_is_better=True) == pytest.approx(-5.0)
    with pytest.raises(ValueError):
        dual_task_cost(0, 1)


def test_partial_overrides_merge_in_camel_or_snake_case() -> None:
    rules = resolve_rules(
        DEFAULT_RULES, {"mastery": {"consecutiveSessions": 2}}, {"stages": {"retention_max_hours": 48}}
    )
    assert rules.mastery.consecutive_sessions == 2
    assert rules.mastery.max_pain == 2  # untouched
    assert rules.stages.retention_max_hours == 48


@pytest.mark.parametrize(
    "patch",
    [
        {"mastery": {"maxPain": 11}},
        {"mastery": {"consecutiveSesions": 2}},
        {"symptoms": {"acceptablePainMax": 1}},
        {"stages": {"retentionMinHours": 80}},
        {"load": {"maxIncreasePct": 0}},
        {"load": {"increasePct": 25}},
        {"advance": {"dimensionOrder": ["joints", "joints"]}},
    ],
)
def test_invalid_overrides_are_refused(patch: dict[str, object]) -> None:
    with pytest.raises(RuleError):
        resolve_rules(DEFAULT_RULES, patch)


def test_later_scopes_win_pattern_then_plan_then_plans_pattern(
    catalogue: Catalogue, draft: PlanState
) -> None:
    balance = catalogue.get("standing-balance")
    assert activity_rules(draft, balance).advance.dimension_order == (
        Dimension.LOAD_BEARING,
        Dimension.PROPRIOCEPTION,
        Dimension.JOINTS,
        Dimension.MOTION,
        Dimension.TEMPO,
        Dimension.RESISTANCE,
    )
    plan = draft.model_copy(
        update={
            "rule_overrides": RuleOverrides(
                plan={"mastery": {"consecutiveSessions": 4}, "advance": {"dimensionOrder": ["tempo"]}},
                patterns={"standing-balance": {"mastery": {"consecutiveSessions": 5}}},
            )
        }
    )
    knee = catalogue.get("knee-extension")
    assert activity_rules(plan, knee).mastery.consecutive_sessions == 4
    assert activity_rules(plan, balance).mastery.consecutive_sessions == 5
    assert activity_rules(plan, balance).advance.dimension_order == (Dimension.TEMPO,)
