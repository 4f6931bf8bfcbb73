"""Progression rules as data: defaults from the brief, overridable per plan and per pattern.

Resolution order for one activity (later wins): the service defaults (:data:`DEFAULT_RULES`) <- the
catalogue pattern's own settings (its mastery quality/pain, its dimension order) <- the plan's overrides <-
the plan's overrides for that pattern. Overrides are partial JSON objects (camelCase or snake_case keys); an
override that does not validate is refused whole.

Sources of the defaults:
- mastery: 3 consecutive sessions within target, pain in the safe zone, no 24-hour flare (brief, competence
  ladder); every criterion of the level measured (or waived by a therapist, recorded);
- pain-monitoring model (Silbernagel et al. 2007): during activity 0-2 safe, above 2 to 5 acceptable (hold),
  above 5 high risk (regress what was last changed); pain the next morning back to the patient's baseline; no
  rise from week to week. Judged against the patient's own baseline (pain before the session) as well;
- load: NSCA "2-for-2" - add 2.5-10 % when the last set beats the target by >= 2 reps in 2 sessions running,
  never more than ``load.maxIncreasePct`` (10 %) relative to the current load;
- dimension order: joints -> motion -> load bearing -> proprioception -> resistance -> tempo, one at a time;
- stages: a feedback-free retention attempt 20-72 h after the last practice, dual-task deterioration <= 10 %;
  advancing a level re-enters at conscious competence, a symptomatic regression drops to it at most;
- safety: fall risk (TUG > 13.5 s, Shumway-Cook 2000; Berg < 45, Berg 1992) turns load-bearing and
  proprioception advances into proposals for the therapist; the same advance failing twice asks the therapist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake

from relearn.plan.domain.patterns import Dimension

Assistance = Literal["none", "minimal", "moderate", "maximal"]
ASSISTANCE_ORDER: tuple[Assistance, ...] = ("none", "minimal", "moderate", "maximal")
SymptomAction = Literal["regress", "hold"]


class RuleError(ValueError):
    """A rule override that does not validate."""


class _Rules(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class MasteryRule(_Rules):
    """When the current level counts as mastered (and when a session is 'within target')."""

    consecutive_sessions: int = Field(default=3, ge=1, le=20)
    max_pain: int = Field(
        default=2, ge=0, le=10, description="safe zone: pain after (and 24 h after) at most this"
    )
    min_quality: int = Field(default=3, ge=0, le=4, description="therapist's movement-quality rating 0-4")
    reps_fraction: float = Field(
        default=1.0, gt=0, le=1, description="share of the prescribed reps in every set"
    )
    max_assistance: Assistance = "minimal"
    require_24h_response: bool = Field(
        default=True, description="a session counts only once its 24-hour symptom response shows no flare"
    )
    evidence_wait_minutes: float = Field(
        default=30,
        ge=0,
        le=24 * 60,
        description="how long a decision waits for the metrics of a session's streams before judging the "
        "criteria they would have measured missing",
    )


class SymptomRule(_Rules):
    """Symptoms block progress: acceptable pain holds; high-risk pain or a flare undoes the last change."""

    acceptable_pain_max: int = Field(default=5, ge=0, le=10)
    unacceptable_action: SymptomAction = "regress"
    flare_action: SymptomAction = "regress"
    relative_to_baseline: bool = Field(
        default=True,
        description="pain up to the patient's own baseline (pain before the session) counts as safe while it "
        "stays within the acceptable zone (a patient at 4 before every session is not held forever)",
    )
    max_rise_over_baseline: int = Field(
        default=2, ge=0, le=10, description="a rise above the baseline by more than this is not safe"
    )
    next_day_back_to_baseline: bool = Field(
        default=True, description="24-hour pain above the baseline counts as a flare that has not settled"
    )
    weekly_rise_max: float = Field(
        default=1,
        ge=0,
        le=10,
        description="mean pain before sessions in the last 7 days above the 7 days before by more than this "
        "holds every advance",
    )
    failed_advances_before_review: int = Field(
        default=2,
        ge=1,
        le=10,
        description="the same advance undone by symptoms this often asks the therapist",
    )


class LoadRule(_Rules):
    """NSCA 2-for-2 load progression."""

    enabled: bool = True
    reps_over_target: int = Field(default=2, ge=1, le=20)
    consecutive_sessions: int = Field(default=2, ge=1, le=10)
    increase_pct: float | None = Field(default=None, ge=2.5, le=10, description="None: the pattern's default")
    increment_kg: float = Field(default=0.5, gt=0, le=10, description="loads are rounded to this step")
    max_increase_pct: float = Field(
        default=10,
        gt=0,
        le=100,
        description="the largest relative load increase; a smaller increment than the step: the load holds",
    )


class AdvanceRule(_Rules):
    dimension_order: tuple[Dimension, ...] | None = Field(
        default=None, description="dimensions advanced, in this order; left out = not advanced; None = all"
    )
    strategy: Literal["in-order", "round-robin"] = "in-order"

    @model_validator(mode="after")
    def _unique(self) -> AdvanceRule:
        if self.dimension_order is not None and len(set(self.dimension_order)) != len(self.dimension_order):
            raise ValueError("dimensionOrder repeats a dimension")
        return self


class StageRule(_Rules):
    self_rating_tolerance: int = Field(
        default=1, ge=0, le=4, description="self-rating agrees when |self - therapist quality| <= this"
    )
    retention_min_hours: float = Field(default=20, ge=0, le=24 * 60)
    retention_max_hours: float = Field(default=72, ge=0, le=24 * 60)
    max_dual_task_cost_pct: float = Field(
        default=10, ge=0, le=100, description="one-sided: deterioration under a dual task at most this"
    )
    on_advance: Literal["conscious-competence", "keep"] = Field(
        default="conscious-competence",
        description="a stage belongs to the level it was earned at: an advance re-enters at conscious "
        "competence",
    )

    @model_validator(mode="after")
    def _window(self) -> StageRule:
        if self.retention_max_hours < self.retention_min_hours:
            raise ValueError("stages.retentionMaxHours is below retentionMinHours")
        return self


class SafetyRule(_Rules):
    """Advances that need a therapist's approval for a patient at fall risk (at the last evaluation)."""

    fall_risk_tug_s: float = Field(default=13.5, gt=0, le=120, description="TUG above this: fall risk")
    fall_risk_berg_below: float = Field(default=45, ge=0, le=56, description="Berg below this: fall risk")
    approve_dimensions: tuple[Dimension, ...] = Field(
        default=(Dimension.LOAD_BEARING, Dimension.PROPRIOCEPTION),
        description="advances on these dimensions become proposals for a patient at fall risk",
    )


class ProgressionRules(_Rules):
    mastery: MasteryRule = MasteryRule()
    symptoms: SymptomRule = SymptomRule()
    load: LoadRule = LoadRule()
    advance: AdvanceRule = AdvanceRule()
    stages: StageRule = StageRule()
    safety: SafetyRule = SafetyRule()

    @model_validator(mode="after")
    def _pain_zones_ordered(self) -> ProgressionRules:
        if self.symptoms.acceptable_pain_max < self.mastery.max_pain:
            raise ValueError("symptoms.acceptablePainMax is below mastery.maxPain")
        return self


DEFAULT_RULES = ProgressionRules()

RulePatch = Mapping[str, Any]


def _key_maps() -> tuple[dict[str, str], dict[str, str]]:
    # Field names and aliases of every rules model: ``require24HResponse`` <-> ``require_24h_response`` (a
    # generic to_snake would make ``require_24_h_response`` of it).
    to_name: dict[str, str] = {}
    to_alias: dict[str, str] = {}
    for model in (MasteryRule, SymptomRule, LoadRule, AdvanceRule, StageRule, SafetyRule, ProgressionRules):
        for name, field in model.model_fields.items():
            alias = field.alias or name
            to_name[alias] = to_name[name] = name
            to_alias[alias] = to_alias[name] = alias
    return to_name, to_alias


_TO_NAME, _TO_ALIAS = _key_maps()


def _snake_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {_TO_NAME.get(str(k), to_snake(str(k))): _snake_keys(v) for k, v in value.items()}
    return value


def canonical_patch(patch: RulePatch) -> dict[str, Any]:
    """A rules override with every known key in its camelCase form (as the rules are shown); unknown keys are
    kept as sent, so validation names them."""

    def camel(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {_TO_ALIAS.get(str(k), str(k)): camel(v) for k, v in value.items()}
        return value

    result: dict[str, Any] = camel(patch)
    return result


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_rules(base: ProgressionRules, *patches: RulePatch | None) -> ProgressionRules:
    """``base`` with each partial override applied in turn; :class:`RuleError` if the result is invalid."""
    merged: dict[str, Any] = base.model_dump(mode="json", by_alias=False)
    for patch in patches:
        if patch:
            merged = _merge(merged, _snake_keys(patch))
    try:
        return ProgressionRules.model_validate(merged)
    except ValidationError as exc:
        raise RuleError(str(exc)) from None


PainZone = Literal["safe", "acceptable", "unacceptable"]


def pain_zone(pain: int, rules: ProgressionRules, baseline: int | None = None) -> PainZone:
    """Silbernagel's pain-monitoring zones with the plan's thresholds, and the patient's own baseline.

    Above the acceptable zone is high risk whatever the baseline. Below it, pain up to the patient's baseline
    (pain before the session) counts as safe when the rules judge relative to the baseline, and a rise above
    the baseline by more than ``maxRiseOverBaseline`` never does.
    """
    s = rules.symptoms
    if pain > s.acceptable_pain_max:
        return "unacceptable"
    if s.relative_to_baseline and baseline is not None:
        if pain - baseline > s.max_rise_over_baseline:
            return "acceptable"
        return "safe" if pain <= max(baseline, rules.mastery.max_pain) else "acceptable"
    return "safe" if pain <= rules.mastery.max_pain else "acceptable"


def settled_by_next_day(pain_24h: int, rules: ProgressionRules, baseline: int | None) -> bool:
    """Pain the next morning back to the patient's baseline (Silbernagel), when the rules ask for it."""
    if not rules.symptoms.next_day_back_to_baseline or baseline is None:
        return True
    return pain_24h <= max(baseline, rules.mastery.max_pain)


def dual_task_cost(single: float, dual: float, *, lower_is_better: bool = False) -> float:
    """Dual-task cost in %: ``100 * (single - dual) / single``, sign flipped where lower is better (sway).

    Positive means worse under the dual task, whichever way the measure runs.
    """
    if single == 0:
        raise ValueError("the single-task value is 0: dual-task cost is undefined")
    cost = 100.0 * (single - dual) / single
    return -cost if lower_is_better else cost


def assistance_within(used: str, allowed: str) -> bool:
    order: list[str] = list(ASSISTANCE_ORDER)
    if used not in order:
        return False
    return order.index(used) <= order.index(allowed)
