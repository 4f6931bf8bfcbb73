"""Progression rules as data: defaults from the brief, overridable per plan and per pattern.

Resolution order for one activity (later wins): the service defaults (:data:`DEFAULT_RULES`) <- the
catalogue pattern's own settings (its mastery quality/pain, its dimension order) <- the plan's overrides <-
the plan's overrides for that pattern. Overrides are partial JSON objects (camelCase or snake_case keys); an
override that does not validate is refused whole.

Sources of the defaults:
- mastery: 3 consecutive sessions within target, pain <= 3/10, no 24-hour flare (brief, competence ladder);
- pain zones (Silbernagel et al. 2007): 0-3 safe, 4-5 acceptable (hold), > 5 not acceptable (regress);
- load: NSCA "2-for-2" - add 2.5-10 % when the last set beats the target by >= 2 reps in 2 sessions running;
- dimension order: joints -> motion -> load bearing -> proprioception -> resistance -> tempo, one at a time;
- stages: retention check >= 24 h after the last practice, dual-task cost |cost| <= 10 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake

from relearn.plan.patterns import Dimension

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
    max_pain: int = Field(default=3, ge=0, le=10, description="pain after (and 24 h after) at most this")
    min_quality: int = Field(default=3, ge=0, le=4, description="therapist's movement-quality rating 0-4")
    reps_fraction: float = Field(
        default=1.0, gt=0, le=1, description="share of the prescribed reps in every set"
    )
    max_assistance: Assistance = "minimal"
    require_24h_response: bool = Field(
        default=True, description="a session counts only once its 24-hour symptom response shows no flare"
    )
    require_device_metrics: bool = Field(
        default=False, description="a device criterion that was not measured fails instead of being skipped"
    )


class SymptomRule(_Rules):
    """Symptoms block progress: acceptable pain holds, unacceptable pain or a flare regresses."""

    acceptable_pain_max: int = Field(default=5, ge=0, le=10)
    unacceptable_action: SymptomAction = "regress"
    flare_action: SymptomAction = "regress"


class LoadRule(_Rules):
    """NSCA 2-for-2 load progression."""

    enabled: bool = True
    reps_over_target: int = Field(default=2, ge=1, le=20)
    consecutive_sessions: int = Field(default=2, ge=1, le=10)
    increase_pct: float | None = Field(default=None, ge=2.5, le=10, description="None: the pattern's default")
    increment_kg: float = Field(default=0.5, gt=0, le=10, description="loads are rounded to this step")


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
    retention_hours: float = Field(default=24, ge=0, le=24 * 60)
    max_dual_task_cost_pct: float = Field(default=10, ge=0, le=100)


class ProgressionRules(_Rules):
    mastery: MasteryRule = MasteryRule()
    symptoms: SymptomRule = SymptomRule()
    load: LoadRule = LoadRule()
    advance: AdvanceRule = AdvanceRule()
    stages: StageRule = StageRule()

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
    for model in (MasteryRule, SymptomRule, LoadRule, AdvanceRule, StageRule, ProgressionRules):
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


def pain_zone(pain: int, rules: ProgressionRules) -> Literal["safe", "acceptable", "unacceptable"]:
    """Silbernagel's pain-monitoring zones with the plan's thresholds."""
    if pain <= rules.mastery.max_pain:
        return "safe"
    if pain <= rules.symptoms.acceptable_pain_max:
        return "acceptable"
    return "unacceptable"


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
