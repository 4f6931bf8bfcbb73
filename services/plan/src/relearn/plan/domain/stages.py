"""Competence stages of a movement pattern and the default evidence ladder that moves a patient up it.

unconscious incompetence -> conscious incompetence -> conscious competence -> unconscious competence
(the seed's four stages). No published consensus gives thresholds, so every criterion reads the plan's
:class:`~relearn.plan.domain.rules.StageRule` / :class:`~relearn.plan.domain.rules.MasteryRule`:

- unconscious -> conscious incompetence: the patient's self-rating agrees with the therapist's quality rating
  (|self - quality| <= tolerance);
- conscious incompetence -> conscious competence: N consecutive sessions within target (feedback allowed),
  pain <= 3/10, no 24-hour flare;
- conscious -> unconscious competence: since reaching conscious competence, the last N sessions performed
  without feedback are within target, one of them is a retention check - an attempt the therapist marked as a
  feedback-free retention attempt, 20-72 h after the last practice of the pattern (home practice included) -
  and one is under a dual task whose deterioration (cost computed by the sessions service from paired
  single/dual measurements) is at most 10 % (one-sided: a patient who improves under a dual task passes).

A stage belongs to the level at which it was earned: advancing a level re-enters at conscious competence
(``stages.onAdvance``), and a symptomatic regression drops the stage to conscious competence at most. A
therapist can set any stage with an override.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from relearn.plan.domain.rules import ProgressionRules

if TYPE_CHECKING:  # state imports the stages: only the type is needed here
    from relearn.plan.domain.state import CriterionResult


class CompetenceStage(StrEnum):
    UNCONSCIOUS_INCOMPETENCE = "unconscious-incompetence"
    CONSCIOUS_INCOMPETENCE = "conscious-incompetence"
    CONSCIOUS_COMPETENCE = "conscious-competence"
    UNCONSCIOUS_COMPETENCE = "unconscious-competence"

    @property
    def rank(self) -> int:
        return STAGE_ORDER.index(self)

    @property
    def display(self) -> str:
        return self.value.replace("-", " ").capitalize()


STAGE_ORDER: tuple[CompetenceStage, ...] = tuple(CompetenceStage)


@dataclass(frozen=True)
class Attempt:
    """One logged performance of an activity, as the stage criteria see it."""

    session: str
    start: datetime | None
    end: datetime | None
    qualifies: bool  # within target, pain within the safe zone, no 24-hour flare
    with_feedback: bool
    dual_task: bool
    dual_task_cost_pct: float | None
    self_rating: int | None
    quality: int | None  # None: not rated (home practice) - neutral for every streak
    evidence: tuple[str, ...]
    qualifies_but_for_evidence: bool = False  # only missing or pending evidence keeps it from qualifying
    retention_attempt: bool = False
    criteria: tuple[CriterionResult, ...] = ()

    @property
    def rated(self) -> bool:
        return self.quality is not None


@dataclass(frozen=True)
class StageChange:
    to: CompetenceStage
    reason: str
    evidence: tuple[str, ...]


def _evidence(attempts: Sequence[Attempt]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ref for a in attempts for ref in a.evidence))


def mastery_streak(attempts: Sequence[Attempt], n: int) -> tuple[Attempt, ...] | None:
    """The last ``n`` rated attempts when all of them qualify, else None (unrated ones neither count nor
    break the streak)."""
    rated = [a for a in attempts if a.rated]
    if n <= 0 or len(rated) < n:
        return None
    tail = tuple(rated[-n:])
    return tail if all(a.qualifies for a in tail) else None


def self_rating_agrees(attempt: Attempt, rules: ProgressionRules) -> bool:
    if attempt.self_rating is None or attempt.quality is None:
        return False
    return abs(attempt.self_rating - attempt.quality) <= rules.stages.self_rating_tolerance


def _starts(a: Attempt) -> datetime | None:
    return a.start or a.end


def is_retention_check(attempt: Attempt, previous: Attempt | None, rules: ProgressionRules) -> bool:
    """Marked as a feedback-free retention attempt and performed 20-72 h (the rules' window) after the
    previous practice of the pattern ended."""
    if previous is None or not attempt.retention_attempt or attempt.with_feedback:
        return False
    began, last = _starts(attempt), previous.end or previous.start
    if began is None or last is None:
        return False
    hours = (began - last).total_seconds() / 3600
    return rules.stages.retention_min_hours <= hours <= rules.stages.retention_max_hours


def dual_task_within(attempt: Attempt, rules: ProgressionRules) -> bool:
    """One-sided: the deterioration under the dual task is at most the limit (an improvement passes)."""
    return (
        attempt.dual_task
        and attempt.dual_task_cost_pct is not None
        and attempt.dual_task_cost_pct <= rules.stages.max_dual_task_cost_pct
    )


def next_stage(
    stage: CompetenceStage,
    *,
    latest: Attempt | None,
    at_level: Sequence[Attempt],
    since_competence: Sequence[Attempt],
    before_competence: Attempt | None,
    rules: ProgressionRules,
) -> StageChange | None:
    """The one-step stage change the evidence supports, or None.

    ``at_level``: attempts at the current progression level, oldest first; ``since_competence``: attempts
    since conscious competence was reached (with ``before_competence`` the attempt just before them, for the
    retention gap); ``latest``: the attempt that triggered this evaluation, if it was a session.
    """
    n = rules.mastery.consecutive_sessions
    if stage is CompetenceStage.UNCONSCIOUS_INCOMPETENCE:
        if latest is not None and self_rating_agrees(latest, rules):
            return StageChange(
                CompetenceStage.CONSCIOUS_INCOMPETENCE,
                f"self-rating {latest.self_rating}/4 agrees with the therapist's quality rating "
                f"{latest.quality}/4 (tolerance {rules.stages.self_rating_tolerance}): the patient now knows "
                "what the movement lacks",
                latest.evidence,
            )
        return None
    if stage is CompetenceStage.CONSCIOUS_INCOMPETENCE:
        streak = mastery_streak(at_level, n)
        if streak is None:
            return None
        return StageChange(
            CompetenceStage.CONSCIOUS_COMPETENCE,
            f"{n} consecutive sessions within target (feedback allowed), pain <= {rules.mastery.max_pain}/10 "
            "and no 24-hour flare",
            _evidence(streak),
        )
    if stage is CompetenceStage.CONSCIOUS_COMPETENCE:
        return _unconscious_competence(since_competence, before_competence, rules)
    return None


def _unconscious_competence(
    since: Sequence[Attempt], before: Attempt | None, rules: ProgressionRules
) -> StageChange | None:
    n = rules.mastery.consecutive_sessions
    without_feedback = [a for a in since if not a.with_feedback]
    streak = mastery_streak(without_feedback, n)
    if streak is None:
        return None
    retention: Attempt | None = None
    dual: Attempt | None = None
    for i, a in enumerate(since):
        if a.with_feedback or not a.qualifies or not a.rated:
            continue
        previous = since[i - 1] if i > 0 else before
        if retention is None and is_retention_check(a, previous, rules):
            retention = a
        if dual is None and dual_task_within(a, rules):
            dual = a
    if retention is None or dual is None:
        return None
    return StageChange(
        CompetenceStage.UNCONSCIOUS_COMPETENCE,
        f"{n} consecutive sessions within target without feedback, a feedback-free retention attempt "
        f"{rules.stages.retention_min_hours:g}-{rules.stages.retention_max_hours:g} h after the previous "
        f"practice ({retention.session}) and a dual-task session with a deterioration of "
        f"{dual.dual_task_cost_pct:g} % (at most {rules.stages.max_dual_task_cost_pct:g} %, {dual.session})",
        _evidence((*streak, retention, dual)),
    )
