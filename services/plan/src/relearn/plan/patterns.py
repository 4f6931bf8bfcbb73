"""Movement patterns: the catalogue's vocabulary and the shape of one pattern.

A movement pattern is trained from its simplest form (level 0 of every ladder: single joint, linear,
non-weight-bearing, eyes open on a stable surface, assisted or unloaded, fixed tempo) and advances along six
dimensions, one at a time. Each dimension's ladder is an ordered list of steps; a step's ``kind`` is ranked so
the loader can refuse a ladder that goes backwards or does not start at the simplest form.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

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


class MetricCheck(BaseModel):
    """One device criterion of mastery: the metric kind and the window its value must fall in."""

    model_config = ConfigDict(frozen=True)

    kind: str
    minimum: float | None
    maximum: float | None
    unit: str
    label: str
    muscle: str | None = None
    reference_kind: str | None = None
    reference_muscle: str | None = None
    antagonist: str | None = None
    source: str = "device"


class MasteryCriteria(CatalogueModel):
    """What shows the current level is mastered, besides the prescribed sets and reps."""

    min_quality: int | None = Field(default=None, ge=0, le=4)
    max_pain: int | None = Field(default=None, ge=0, le=10)
    rom: RomWindow | None = None
    emg_onset_latency_max_ms: float | None = None
    co_contraction_max_pct: float | None = Field(default=None, ge=0, le=100)
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
        if self.emg_onset_latency_max_ms is not None:
            out.append(
                MetricCheck(
                    kind="emg-onset-latency",
                    minimum=None,
                    maximum=self.emg_onset_latency_max_ms,
                    unit="ms",
                    label="EMG onset latency",
                )
            )
        if self.co_contraction_max_pct is not None:
            out.append(
                MetricCheck(
                    kind="co-contraction",
                    minimum=None,
                    maximum=self.co_contraction_max_pct,
                    unit="%",
                    label="co-contraction",
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
        return self

    def top_level(self, dimension: Dimension) -> int:
        return len(self.ladders[dimension]) - 1

    def step(self, dimension: Dimension, level: int) -> LadderStep:
        return self.ladders[dimension][level]

    def unmet_requirements(
        self, dimension: Dimension, level: int, levels: Mapping[Dimension, int]
    ) -> tuple[str, ...]:
        """Why the step at ``level`` of ``dimension`` cannot be prescribed yet (empty: it can)."""
        return ()

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


class Vocabulary(CatalogueModel):
    """How an evaluation names body sites, motions and measures, and how devices name metrics."""

    body_sites: dict[str, tuple[str, ...]]
    motions: dict[str, tuple[str, ...]]
    measure_kinds: dict[str, tuple[str, ...]]
    metric_kinds: dict[str, MetricKind]

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
