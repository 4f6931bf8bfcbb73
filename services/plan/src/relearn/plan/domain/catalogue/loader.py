"""Load and check the movement-pattern catalogue (``movement-patterns.yaml``)."""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from relearn.plan.domain.patterns import (
    REGIONS,
    SESSION_METRIC_KINDS,
    STEP_KINDS,
    CatalogueModel,
    Dimension,
    MovementPattern,
    Region,
    Vocabulary,
)

CATALOGUE_FILE = "movement-patterns.yaml"


class CatalogueError(ValueError):
    """The catalogue file is not a valid movement-pattern catalogue."""


class Catalogue(CatalogueModel):
    version: str = Field(min_length=1)
    # The device metric codes the gateway publishes (checked against the gateway and the evaluation
    # CodeSystem by a cross-service test): a device criterion is measurable only through one of these.
    produced_metrics: tuple[str, ...] = Field(min_length=1)
    vocabulary: Vocabulary
    patterns: tuple[MovementPattern, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        dupes = [code for code, n in Counter(p.code for p in self.patterns).items() if n > 1]
        if dupes:
            raise ValueError(f"pattern codes are not unique: {', '.join(sorted(dupes))}")
        vocab = self.vocabulary
        for p in self.patterns:
            for t in p.targets:
                if t.body_site is not None and t.body_site not in vocab.body_sites:
                    raise ValueError(f"pattern {p.code}: body site '{t.body_site}' is not in the vocabulary")
                if t.motion is not None and t.motion not in vocab.motions:
                    raise ValueError(f"pattern {p.code}: motion '{t.motion}' is not in the vocabulary")
                unknown = [m for m in t.measures if m not in vocab.measure_kinds]
                if unknown:
                    raise ValueError(f"pattern {p.code}: measure kinds {unknown} are not in the vocabulary")
            self._measurable(p)
            self._muscles_known(p)
            self._one_change_per_step(p)
        return self

    def _measurable(self, p: MovementPattern) -> None:
        """Every mastery criterion names a metric some producer publishes (else it could never be met)."""
        for check in p.mastery.checks():
            spec = self.vocabulary.metric_kinds.get(check.kind)
            if spec is None:
                raise ValueError(f"pattern {p.code}: metric '{check.kind}' is not in the vocabulary")
            where = f"pattern {p.code}: mastery criterion {check.label} cannot be measured"
            if spec.source != check.source or spec.unit != check.unit:
                raise ValueError(
                    f"{where}: metric kind '{check.kind}' is {spec.source} in {spec.unit}, the criterion "
                    f"needs {check.source} in {check.unit}"
                )
            if spec.source == "session" and check.kind not in SESSION_METRIC_KINDS:
                raise ValueError(
                    f"{where}: a session records only {sorted(SESSION_METRIC_KINDS)}, not '{check.kind}'"
                )
            if spec.source == "device" and not set(spec.codes) & set(self.produced_metrics):
                raise ValueError(
                    f"{where}: none of the codes {list(spec.codes)} of metric kind '{check.kind}' is in "
                    "producedMetrics"
                )

    def _muscles_known(self, p: MovementPattern) -> None:
        named = [*p.muscles.targets, *p.muscles.antagonists]
        if p.mastery.emg_onset is not None and p.mastery.emg_onset.reference.muscle is not None:
            named.append(p.mastery.emg_onset.reference.muscle)
        unknown = sorted(set(named) - set(self.vocabulary.muscles))
        if unknown:
            raise ValueError(f"pattern {p.code}: muscles {unknown} are not in the vocabulary's muscles")

    def _one_change_per_step(self, p: MovementPattern) -> None:
        """A step outside the load-bearing ladder whose text puts weight on a limb (a posture term) must
        require load bearing to have reached that kind first; otherwise it changes two dimensions. A
        load-bearing step may not say more weight than its own kind."""
        ranks = STEP_KINDS[Dimension.LOAD_BEARING]
        for dim, steps in p.ladders.items():
            for level, step in enumerate(steps):
                where = f"pattern {p.code}: {dim.value} level {level} ('{step.description}')"
                if dim == Dimension.LOAD_BEARING:
                    allowed = ranks[step.kind]
                else:
                    allowed = ranks.get(step.requires.get(Dimension.LOAD_BEARING, ""), 0)
                for found in self.vocabulary.posture(step.description):
                    if allowed >= ranks[found.kind]:
                        continue
                    if dim == Dimension.LOAD_BEARING:
                        raise ValueError(
                            f"{where} is {step.kind}, but '{found.term}' means load bearing {found.kind}"
                        )
                    raise ValueError(
                        f"{where} changes two dimensions: '{found.term}' means load bearing {found.kind}, so "
                        f"the step must declare requires.loadBearing of at least {found.kind} (or be worded "
                        "without that posture)"
                    )

    def get(self, code: str) -> MovementPattern:
        for p in self.patterns:
            if p.code == code:
                return p
        raise KeyError(f"no movement pattern '{code}' in catalogue {self.version}")

    def find(self, code: str) -> MovementPattern | None:
        return next((p for p in self.patterns if p.code == code), None)

    def by_region(self) -> dict[Region, tuple[MovementPattern, ...]]:
        return {r: tuple(p for p in self.patterns if p.region == r) for r in REGIONS}


def parse_catalogue(data: Any) -> Catalogue:
    """Validate already-parsed catalogue data; :class:`CatalogueError` names what is wrong."""
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(str(exc)) from None


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """The catalogue at ``path``, or the one shipped with the service (cached)."""
    if path is None:
        return _shipped()
    text = Path(path).read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))


@cache
def _shipped() -> Catalogue:
    text = files("relearn.plan.domain.catalogue").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))
