"""Normative values and plausible input ranges, kept as data in ``normative-values.json``."""

# Each norm row says what a measurement is compared against (``value``), where a deficit starts
# (``limit`` and ``direction``), how severe a deficit is (a named severity scale), and where the
# numbers come from (a source with its citation). The file's ``about`` lines explain the rules; the
# loader checks the table is coherent (known measures, units, scales and sources) so a bad edit
# fails at start-up rather than mid-request.

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from relearn.evaluation.domain.codes import MEASURES, with_unit

NORMS_FILE = "normative-values.json"

Direction = Literal["below", "above"]
Severity = Literal["mild", "moderate", "severe"]


class NormativeDataError(ValueError):
    """The normative data file is incoherent."""


@dataclass(frozen=True)
class Source:
    key: str
    citation: str
    verification: str


@dataclass(frozen=True)
class SeverityScale:
    """Grades a deficit: at or beyond ``moderate`` is moderate, at or beyond ``severe`` is severe.

    ``basis`` says what is graded: the measured value itself, or the percentage of the norm.
    "Beyond" follows the norm's direction: lower for ``below`` norms, higher for ``above``.
    """

    key: str
    basis: Literal["value", "percent-of-norm"]
    moderate: float
    severe: float
    source: Source

    def grade(self, value: float, percent_of_norm: float | None, direction: Direction) -> Severity:
        x = value if self.basis == "value" else percent_of_norm
        if x is None:
            return "mild"

        def beyond(threshold: float) -> bool:
            return x <= threshold if direction == "below" else x >= threshold

        if beyond(self.severe):
            return "severe"
        if beyond(self.moderate):
            return "moderate"
        return "mild"


@dataclass(frozen=True)
class Norm:
    """One row of the table: the reference a measurement is compared against."""

    measure: str
    kind: Literal["mean", "cut-off", "normal-grade", "ideal"]
    value: float
    limit: float
    direction: Direction
    unit: str
    severity: SeverityScale
    source: Source
    age: tuple[int, int] | None = None
    vision: str | None = None
    surface: str | None = None

    def is_deficit(self, measured: float) -> bool:
        return measured < self.limit if self.direction == "below" else measured > self.limit

    def percent_of_norm(self, measured: float) -> float | None:
        return None if self.value == 0 else round(100 * measured / self.value, 1)

    def applies(self, *, age: int | None, vision: str | None, surface: str | None) -> bool:
        if self.age is not None and (age is None or not self.age[0] <= age <= self.age[1]):
            return False
        # Unstated test conditions are the standard ones: eyes open on a firm floor.
        if self.vision is not None and self.vision != (vision or "eyes-open"):
            return False
        return self.surface is None or self.surface == (surface or "firm")

    def conditions(self) -> dict[str, Any]:
        """The conditions under which this row applies (empty when it always does)."""
        out: dict[str, Any] = {}
        if self.age is not None:
            out["ageYears"] = list(self.age)
        if self.vision is not None:
            out["vision"] = self.vision
        if self.surface is not None:
            out["surface"] = self.surface
        return out

    def describe(self) -> str:
        """The rule in words, e.g. ``deficit below 121.5 deg (mean 135 deg; source: aaos)``."""
        word = "below" if self.direction == "below" else "above"
        where = ""
        if self.age is not None:
            where += f", ages {self.age[0]}-{self.age[1]}"
        if self.vision is not None:
            where += f", {self.vision}"
        if self.surface is not None:
            where += f", {self.surface} surface"
        return (
            f"deficit {word} {with_unit(self.limit, self.unit)} "
            f"({self.kind} {with_unit(self.value, self.unit)}{where}; source: {self.source.key})"
        )


@dataclass(frozen=True)
class PlausibleRange:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class NormativeTable:
    version: str
    norms: tuple[Norm, ...]
    plausible_ranges: dict[str, PlausibleRange]
    sources: dict[str, Source]

    def norm_for(
        self, measure: str, *, age: int | None = None, vision: str | None = None, surface: str | None = None
    ) -> Norm | None:
        """The first row for ``measure`` whose conditions match, or None (not compared)."""
        for norm in self.norms:
            if norm.measure == measure and norm.applies(age=age, vision=vision, surface=surface):
                return norm
        return None

    def plausible(self, measure: str) -> PlausibleRange:
        return self.plausible_ranges[measure]


def parse_norms(data: dict[str, Any]) -> NormativeTable:
    """Build and check a table from the file's JSON structure."""
    try:
        sources = {k: Source(k, v["citation"], v["verification"]) for k, v in data["sources"].items()}
        scales = {
            k: SeverityScale(k, v["basis"], float(v["moderate"]), float(v["severe"]), sources[v["source"]])
            for k, v in data["severity_scales"].items()
        }
        norms = []
        for i, row in enumerate(data["norms"]):
            measure = MEASURES.get(row["measure"])
            if measure is None:
                raise NormativeDataError(f"norms[{i}]: unknown measure {row['measure']!r}")
            if row["unit"] != measure.unit:
                raise NormativeDataError(
                    f"norms[{i}]: unit {row['unit']!r}, {measure.key} is in {measure.unit!r}"
                )
            if row["direction"] not in ("below", "above"):
                raise NormativeDataError(f"norms[{i}]: direction must be 'below' or 'above'")
            age = row.get("age")
            norms.append(
                Norm(
                    measure=row["measure"],
                    kind=row["kind"],
                    value=float(row["value"]),
                    limit=float(row["limit"]),
                    direction=row["direction"],
                    unit=row["unit"],
                    severity=scales[row["severity"]],
                    source=sources[row["source"]],
                    age=(int(age[0]), int(age[1])) if age is not None else None,
                    vision=row.get("vision"),
                    surface=row.get("surface"),
                )
            )
        ranges = {
            k: PlausibleRange(float(v["low"]), float(v["high"])) for k, v in data["plausible_ranges"].items()
        }
    except KeyError as exc:
        raise NormativeDataError(f"missing or unknown key {exc}") from None
    missing = sorted(set(MEASURES) - set(ranges))
    if missing:
        raise NormativeDataError(f"no plausible range for {', '.join(missing)}")
    return NormativeTable(str(data["version"]), tuple(norms), ranges, sources)


def load_norms(path: Path | None = None) -> NormativeTable:
    """The table in ``path``, or the packaged one (parsed once) when ``path`` is None."""
    if path is None:
        return _packaged()
    return parse_norms(json.loads(path.read_text("utf-8")))


@cache
def _packaged() -> NormativeTable:
    text = resources.files("relearn.evaluation").joinpath(NORMS_FILE).read_text("utf-8")
    return parse_norms(json.loads(text))
