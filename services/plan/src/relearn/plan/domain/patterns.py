"""Movement patterns: the catalogue's vocabulary and the shape of one pattern.

A movement pattern is trained from its simplest form (level 0 of every ladder: single joint, linear,
non-weight-bearing, eyes open on a stable surface, assisted or unloaded, fixed tempo) and advances along six
dimensions, one at a time. Each dimension's ladder is an ordered list of steps; a step's ``kind`` is ranked so
the loader can refuse a ladder that goes backwards or does not start at the simplest form.

A step may ``require`` another dimension to have reached a kind first (a joints step "sit-to-stand" requires
load bearing at full-weight-bearing): the step changes its own dimension only, and the posture it needs is the
load-bearing ladder's to reach. :meth:`MovementPattern.unmet_requirements` says what still stands in the way.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class Dimension(StrEnum):
    """The six progression dimensions of the brief; values are the camelCase names used in events."""

    JOINTS = "joints"
    MOTION = "motion"
    LOAD_BEARING = "loadBearing"
    PROPRIOCEPTION = "proprioception"
    RESISTANCE = "resistance"
    TEMPO = "tempo"


DEFAULT_DIMENSION_ORDER: tuple[Dimension, ...] = tuple(Dimension)

DIMENSION_DISPLAY: dict[Dimension, str] = {
    Dimension.JOINTS: "Joints",
    Dimension.MOTION: "Motion",
    Dimension.LOAD_BEARING: "Load bearing",
    Dimension.PROPRIOCEPTION: "Proprioception",
    Dimension.RESISTANCE: "Resistance",
    Dimension.TEMPO: "Tempo",
}

# Rank of each step kind per dimension: a ladder's ranks never decrease.
STEP_KINDS: dict[Dimension, dict[str, int]] = {
    Dimension.JOINTS: {"single-joint": 0, "multi-joint": 1, "functional-task": 2},
    Dimension.MOTION: {"linear": 0, "circular": 1, "diagonal": 1, "multi-planar": 2},
    Dimension.LOAD_BEARING: {
        "non-weight-bearing": 0,
        "partial-weight-bearing": 1,
        "full-weight-bearing": 2,
        "single-limb": 3,
    },
    Dimension.PROPRIOCEPTION: {
        "eyes-open-stable": 0,
        "eyes-closed-stable": 1,
        "eyes-open-unstable": 2,
        "eyes-closed-unstable": 3,
        "narrow-base": 4,
        "perturbation": 4,
    },
    Dimension.RESISTANCE: {"assisted": 0, "none": 1, "light": 2, "progressive": 3},
    Dimension.TEMPO: {"fixed": 0, "variable-speed": 1, "variable-duration": 1, "fast": 2, "reactive": 3},
}

# The kinds a pattern may start from: the seed's "simplest single-joint movement pattern ... in
# non-weight-bearing positions using manual or mechanical assistance".
STARTING_KINDS: dict[Dimension, frozenset[str]] = {
    Dimension.JOINTS: frozenset({"single-joint"}),
    Dimension.MOTION: frozenset({"linear"}),
    Dimension.LOAD_BEARING: frozenset({"non-weight-bearing"}),
    Dimension.PROPRIOCEPTION: frozenset({"eyes-open-stable"}),
    Dimension.RESISTANCE: frozenset({"assisted", "none"}),
    Dimension.TEMPO: frozenset({"fixed"}),
}

Region = Literal["upper-limb", "lower-limb", "trunk", "balance"]
REGIONS: tuple[Region, ...] = ("upper-limb", "lower-limb", "trunk", "balance")


class CatalogueModel(BaseModel):
    """Catalogue data: camelCase in the file, unknown keys refused (a typo is an error, not a default)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class LadderStep(CatalogueModel):
    kind: str = Field(min_length=1)
    description: str = Field(min_length=1)
    # Other dimensions' step kinds this step needs first (rank >=), e.g. {loadBearing: full-weight-bearing}.
    requires: dict[Dimension, str] = Field(default_factory=dict, max_length=len(Dimension))


class TargetDeficit(CatalogueModel):
    """Which evaluation deficits a pattern addresses; an empty field matches anything."""

    body_site: str | None = None
    motion: str | None = None
    measures: tuple[str, ...] = Field(min_length=1)


class DoseDefaults(CatalogueModel):
    sets: int = Field(ge=1, le=10)
    reps: int = Field(ge=1, le=100)
    hold_s: float = Field(default=0, ge=0, le=300)
    rest_s: float = Field(ge=0, le=600)
    frequency_per_week: int = Field(ge=1, le=14)
    # NSCA 2-for-2: add 2.5-10 % when the last set beats the target by >= 2 reps in 2 consecutive sessions.
    load_progression_pct: float = Field(ge=2.5, le=10)


class RomWindow(CatalogueModel):
    min: float | None = Field(default=None, ge=0, le=360)
    max: float | None = Field(default=None, ge=0, le=360)

    @model_validator(mode="after")
    def _ordered(self) -> RomWindow:
        if self.min is None and self.max is None:
            raise ValueError("a ROM window needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("ROM window min is above max")
        return self


# A SENIAM muscle name as a lower-case kebab slug, without side: ``vastus-medialis``.
MuscleSlug = Annotated[str, Field(pattern=r"^[a-z]+(-[a-z]+)*$", max_length=64)]

MetricSource = Literal["device", "session"]
OnsetReferenceKind = Literal["synergist", "cue"]

# Metric kinds a session records itself (contract: ROM per exercise, by goniometer, inclinometer or device).
SESSION_METRIC_KINDS: frozenset[str] = frozenset({"rom"})


class PatternMuscles(CatalogueModel):
    """The muscles a pattern trains and their antagonists: what a stream's EMG channels are bound to."""

    targets: tuple[MuscleSlug, ...] = Field(min_length=1, max_length=8)
    antagonists: tuple[MuscleSlug, ...] = Field(default=(), max_length=8)

    @model_validator(mode="after")
    def _distinct(self) -> PatternMuscles:
        both = set(self.targets) & set(self.antagonists)
        if both:
            raise ValueError(f"muscles {sorted(both)} are both targets and antagonists")
        if len(set(self.targets)) != len(self.targets) or len(set(self.antagonists)) != len(self.antagonists):
            raise ValueError("a muscle is listed twice")
        return self


class OnsetReference(CatalogueModel):
    """What an onset latency is timed against: a synergist's onset (its muscle named) or the movement cue."""

    kind: OnsetReferenceKind
    muscle: MuscleSlug | None = None

    @model_validator(mode="after")
    def _muscle_for_synergist(self) -> OnsetReference:
        if self.kind == "synergist" and self.muscle is None:
            raise ValueError("an onset reference of kind synergist names its muscle")
        if self.kind == "cue" and self.muscle is not None:
            raise ValueError("an onset reference of kind cue names no muscle")
        return self


class EmgOnsetCriterion(CatalogueModel):
    """The trained muscle's onset may lag its reference by at most ``maxMs`` (negative: it leads)."""

    max_ms: float = Field(gt=0, le=1000)
    muscle: MuscleSlug
    reference: OnsetReference

    @model_validator(mode="after")
    def _not_itself(self) -> EmgOnsetCriterion:
        if self.reference.muscle == self.muscle:
            raise ValueError(f"the onset of {self.muscle} cannot be timed against itself")
        return self


class CoContractionCriterion(CatalogueModel):
    """Winter's co-contraction index of one declared agonist/antagonist pair, on %MVC envelopes."""

    max_pct: float = Field(gt=0, le=100)
    agonist: MuscleSlug
    antagonist: MuscleSlug

    @model_validator(mode="after")
    def _a_pair(self) -> CoContractionCriterion:
        if self.agonist == self.antagonist:
            raise ValueError("co-contraction needs two different muscles")
        return self


class MetricCheck(BaseModel):
    """One measured criterion of mastery: the metric kind, the window its value must fall in, which muscle
    (and reference or antagonist) it is measured on, and who produces it (a device stream or the session)."""

    model_config = ConfigDict(frozen=True)

    kind: str
    minimum: float | None
    maximum: float | None
    unit: str
    label: str
    muscle: str | None = None
    reference_kind: OnsetReferenceKind | None = None
    reference_muscle: str | None = None
    antagonist: str | None = None
    source: MetricSource = "device"


class MasteryCriteria(CatalogueModel):
    """What shows the current level is mastered, besides the prescribed sets and reps."""

    min_quality: int | None = Field(default=None, ge=0, le=4)
    max_pain: int | None = Field(default=None, ge=0, le=10)
    rom: RomWindow | None = None
    emg_onset: EmgOnsetCriterion | None = None
    co_contraction: CoContractionCriterion | None = None
    sway_area_max_cm2: float | None = Field(default=None, gt=0)
    sway_velocity_max_cm_s: float | None = Field(default=None, gt=0)

    def checks(self) -> tuple[MetricCheck, ...]:
        out: list[MetricCheck] = []
        if self.rom is not None:
            out.append(
                MetricCheck(
                    kind="rom",
                    minimum=self.rom.min,
                    maximum=self.rom.max,
                    unit="deg",
                    label="ROM",
                    source="session",
                )
            )
        if self.emg_onset is not None:
            onset = self.emg_onset
            against = onset.reference.muscle if onset.reference.kind == "synergist" else "the cue"
            out.append(
                MetricCheck(
                    kind="emg-onset-latency",
                    minimum=None,
                    maximum=onset.max_ms,
                    unit="ms",
                    label=f"EMG onset latency of {onset.muscle} (relative to {against})",
                    muscle=onset.muscle,
                    reference_kind=onset.reference.kind,
                    reference_muscle=onset.reference.muscle,
                )
            )
        if self.co_contraction is not None:
            pair = self.co_contraction
            out.append(
                MetricCheck(
                    kind="co-contraction",
                    minimum=None,
                    maximum=pair.max_pct,
                    unit="%",
                    label=f"co-contraction of {pair.agonist}/{pair.antagonist}",
                    muscle=pair.agonist,
                    antagonist=pair.antagonist,
                )
            )
        if self.sway_area_max_cm2 is not None:
            out.append(
                MetricCheck(
                    kind="sway-area",
                    minimum=None,
                    maximum=self.sway_area_max_cm2,
                    unit="cm2",
                    label="sway area",
                )
            )
        if self.sway_velocity_max_cm_s is not None:
            out.append(
                MetricCheck(
                    kind="sway-velocity",
                    minimum=None,
                    maximum=self.sway_velocity_max_cm_s,
                    unit="cm/s",
                    label="sway velocity",
                )
            )
        return tuple(out)


class MovementPattern(CatalogueModel):
    code: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    name: str = Field(min_length=1)
    region: Region
    sided: bool
    targets: tuple[TargetDeficit, ...] = Field(min_length=1)
    keywords: tuple[str, ...] = ()
    starting_form: str = Field(min_length=1)
    dimension_order: tuple[Dimension, ...] | None = None
    muscles: PatternMuscles
    ladders: dict[Dimension, tuple[LadderStep, ...]]
    dosing: DoseDefaults
    mastery: MasteryCriteria
    evidence: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ladders_start_simple_and_climb(self) -> MovementPattern:
        missing = [d.value for d in Dimension if d not in self.ladders]
        if missing:
            raise ValueError(f"pattern {self.code}: no ladder for {', '.join(missing)}")
        for dim, steps in self.ladders.items():
            if not steps:
                raise ValueError(f"pattern {self.code}: the {dim.value} ladder is empty")
            ranks = STEP_KINDS[dim]
            for i, step in enumerate(steps):
                if step.kind not in ranks:
                    raise ValueError(
                        f"pattern {self.code}: {dim.value}[{i}] kind '{step.kind}' "
                        f"is not one of {sorted(ranks)}"
                    )
            if steps[0].kind not in STARTING_KINDS[dim]:
                raise ValueError(
                    f"pattern {self.code}: {dim.value} level 0 is '{steps[0].kind}', not the simplest form "
                    f"({' or '.join(sorted(STARTING_KINDS[dim]))})"
                )
            for i in range(1, len(steps)):
                if ranks[steps[i].kind] < ranks[steps[i - 1].kind]:
                    raise ValueError(
                        f"pattern {self.code}: {dim.value}[{i}] '{steps[i].kind}' "
                        "is easier than the step before"
                    )
        if self.dimension_order is not None and len(set(self.dimension_order)) != len(self.dimension_order):
            raise ValueError(f"pattern {self.code}: dimensionOrder repeats a dimension")
        self._check_requires()
        self._check_criteria_muscles()
        return self

    def _check_requires(self) -> None:
        for dim, steps in self.ladders.items():
            for level, step in enumerate(steps):
                for other, kind in step.requires.items():
                    where = f"pattern {self.code}: {dim.value} level {level} requires {other.value} '{kind}'"
                    if other == dim:
                        raise ValueError(f"{where}: a step cannot require its own dimension")
                    ranks = STEP_KINDS[other]
                    if kind not in ranks:
                        raise ValueError(f"{where}, which is not one of {sorted(ranks)}")
                    reached = max(ranks[s.kind] for s in self.ladders[other])
                    if ranks[kind] > reached:
                        raise ValueError(f"{where}, which this pattern's {other.value} ladder never reaches")
                    if level == 0 and ranks[kind] > ranks[self.ladders[other][0].kind]:
                        raise ValueError(f"{where}, but level 0 is the starting form and cannot wait for it")

    def _check_criteria_muscles(self) -> None:
        onset, pair = self.mastery.emg_onset, self.mastery.co_contraction
        if onset is not None and onset.muscle not in self.muscles.targets:
            raise ValueError(
                f"pattern {self.code}: emgOnset muscle '{onset.muscle}' is not one of its target muscles"
            )
        if pair is not None:
            if pair.agonist not in self.muscles.targets:
                raise ValueError(
                    f"pattern {self.code}: coContraction agonist '{pair.agonist}' is not one of its "
                    "target muscles"
                )
            if pair.antagonist not in self.muscles.antagonists:
                raise ValueError(
                    f"pattern {self.code}: coContraction antagonist '{pair.antagonist}' is not one of its "
                    "antagonists"
                )

    def top_level(self, dimension: Dimension) -> int:
        return len(self.ladders[dimension]) - 1

    def step(self, dimension: Dimension, level: int) -> LadderStep:
        return self.ladders[dimension][level]

    def unmet_requirements(
        self, dimension: Dimension, level: int, levels: Mapping[Dimension, int]
    ) -> tuple[str, ...]:
        """Why ``dimension`` at ``level`` cannot be prescribed yet with the other dimensions at ``levels``
        (a dimension missing from ``levels`` is at level 0); empty when it can."""
        if not 0 <= level <= self.top_level(dimension):
            raise ValueError(f"{dimension.value} level {level} is outside 0-{self.top_level(dimension)}")
        unmet: list[str] = []
        for other, kind in self.step(dimension, level).requires.items():
            # A level beyond a ladder's top is read as its top (the plan cannot be further than that).
            now = self.step(other, min(max(levels.get(other, 0), 0), self.top_level(other)))
            ranks = STEP_KINDS[other]
            if ranks[now.kind] < ranks[kind]:
                unmet.append(
                    f"{DIMENSION_DISPLAY[other].lower()} must first reach {kind} (now '{now.description}')"
                )
        return tuple(unmet)

    def rule_patch(self) -> dict[str, Any]:
        """The pattern's own rule settings, applied over the service defaults."""
        mastery: dict[str, Any] = {}
        if self.mastery.min_quality is not None:
            mastery["min_quality"] = self.mastery.min_quality
        if self.mastery.max_pain is not None:
            mastery["max_pain"] = self.mastery.max_pain
        patch: dict[str, Any] = {"mastery": mastery} if mastery else {}
        if self.dimension_order is not None:
            patch["advance"] = {"dimension_order": [d.value for d in self.dimension_order]}
        return patch


def slug(text: str) -> str:
    """Lower case, words joined by '-': ``"Left Knee joint"`` -> ``left-knee-joint``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _has_word(haystack: str, needle: str) -> bool:
    return bool(needle) and f"-{needle}-" in f"-{haystack}-"


class MetricKind(CatalogueModel):
    codes: tuple[str, ...] = Field(min_length=1)
    unit: str
    # Who measures it: a device stream (its codes must be published, see ``producedMetrics``) or the session.
    source: MetricSource


class PostureMatch(BaseModel):
    """A posture term found in a step's text and the load-bearing kind it implies."""

    model_config = ConfigDict(frozen=True)

    term: str
    kind: str


class Vocabulary(CatalogueModel):
    """How an evaluation names body sites, motions and measures, how devices name metrics, which muscles the
    catalogue may name, and which words in a step's text imply a load-bearing state."""

    body_sites: dict[str, tuple[str, ...]]
    motions: dict[str, tuple[str, ...]]
    measure_kinds: dict[str, tuple[str, ...]]
    metric_kinds: dict[str, MetricKind]
    muscles: tuple[MuscleSlug, ...] = Field(min_length=1)
    posture_terms: dict[str, str] = Field(min_length=1)

    @model_validator(mode="after")
    def _posture_kinds(self) -> Vocabulary:
        kinds = STEP_KINDS[Dimension.LOAD_BEARING]
        for term, kind in self.posture_terms.items():
            if not slug(term):
                raise ValueError(f"posture term '{term}' has no words")
            if kind not in kinds:
                raise ValueError(
                    f"posture term '{term}': '{kind}' is not a load-bearing kind {sorted(kinds)}"
                )
        return self

    def posture(self, text: str) -> tuple[PostureMatch, ...]:
        """The posture terms in ``text`` (word boundaries, a plural 's' allowed); a term inside a longer
        matching term is not counted ("supported mini-squat" is not also a "squat")."""
        hay = f"-{slug(text)}-"
        spans: list[tuple[int, int, str, str]] = []
        for term, kind in self.posture_terms.items():
            s = slug(term)
            for needle in (f"-{s}-", f"-{s}s-"):
                at = hay.find(needle)
                while at >= 0:
                    spans.append((at + 1, at + len(needle) - 1, term, kind))
                    at = hay.find(needle, at + 1)
        kept = [
            a
            for a in spans
            if not any(b[0] <= a[0] and a[1] <= b[1] and (b[1] - b[0]) > (a[1] - a[0]) for b in spans)
        ]
        return tuple(dict.fromkeys(PostureMatch(term=t, kind=k) for _, _, t, k in sorted(kept)))

    @staticmethod
    def _best(texts: list[str], table: dict[str, tuple[str, ...]]) -> str | None:
        # The longest matching alias wins ("cervical-spine" is the neck, not the trunk's "spine").
        best: tuple[int, str] | None = None
        for text in texts:
            hay = slug(text)
            for canonical, aliases in table.items():
                for alias in (canonical, *aliases):
                    a = slug(alias)
                    if _has_word(hay, a) and (best is None or len(a) > best[0]):
                        best = (len(a), canonical)
            if best is not None:
                return best[1]
        return None

    def body_site(self, *texts: str | None) -> str | None:
        """The canonical body site named by the first text that names one."""
        return self._best([t for t in texts if t], self.body_sites)

    def motion(self, *texts: str | None) -> str | None:
        return self._best([t for t in texts if t], self.motions)

    def measure_kind(self, code: str) -> str | None:
        s = slug(code)
        for kind, globs in self.measure_kinds.items():
            if any(fnmatch.fnmatchcase(s, g) for g in globs):
                return kind
        return None

    def metric_kind(self, code: str) -> str | None:
        s = slug(code)
        for kind, spec in self.metric_kinds.items():
            if s == slug(kind) or s in {slug(c) for c in spec.codes}:
                return kind
        return None
