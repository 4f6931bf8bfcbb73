"""Load and check the movement-pattern catalogue (``movement-patterns.yaml``)."""

from __future__ import annotations

from collections import Counter
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from relearn.plan.patterns import REGIONS, CatalogueModel, MovementPattern, Region, Vocabulary

CATALOGUE_FILE = "movement-patterns.yaml"


class CatalogueError(ValueError):
    """The catalogue file is not a valid movement-pattern catalogue."""


class Catalogue(CatalogueModel):
    version: str = Field(min_length=1)
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
            for check in p.mastery.checks():
                if check.kind not in vocab.metric_kinds:
                    raise ValueError(f"pattern {p.code}: metric '{check.kind}' is not in the vocabulary")
        return self

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
    text = files("relearn.plan.catalogue").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))
