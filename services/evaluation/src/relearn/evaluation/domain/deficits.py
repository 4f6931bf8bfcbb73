"""Deficits: each measurement of an evaluation compared with its norm, deterministically."""

# :func:`assess` returns one :class:`Assessment` per measurement that has an applicable norm (in
# request order: pain, balance, range of motion, strength); :func:`find_deficits` keeps those
# beyond the norm's limit. Every :class:`Deficit` carries the norm row it was judged against, its
# source, and a sentence saying why, so a therapist can check the rule and a clinic can change it in
# ``normative-values.json``.
#
# Manual muscle tests compare the base grade, with a ``-`` counting half a grade lower (``5-`` is
# below normal, ``3-`` grades as moderate rather than severe); ``+`` counts as its base grade.

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from relearn.evaluation.domain import codes
from relearn.evaluation.domain.normative import Norm, NormativeTable, Severity, load_norms


class BalanceTest(Protocol):
    """What the rules read of a balance test (the API's ``BalanceTestIn`` is one)."""

    @property
    def test(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def side(self) -> str | None: ...
    @property
    def vision(self) -> str | None: ...
    @property
    def surface(self) -> str | None: ...
    @property
    def stance(self) -> str | None: ...


class RangeOfMotion(Protocol):
    @property
    def measure(self) -> codes.Measure: ...
    @property
    def degrees(self) -> float: ...
    @property
    def side(self) -> str: ...
    @property
    def joint(self) -> str: ...
    @property
    def motion(self) -> str: ...
    @property
    def mode(self) -> str: ...


class MuscleTest(Protocol):
    @property
    def base_grade(self) -> int: ...
    @property
    def modifier(self) -> str | None: ...
    @property
    def side(self) -> str: ...
    @property
    def muscle_group(self) -> str: ...
    @property
    def grade(self) -> str: ...


class Evaluation(Protocol):
    """The measurements of an evaluation the rules judge (the API's ``EvaluationIn`` is one)."""

    @property
    def age_years(self) -> int | None: ...
    @property
    def pain(self) -> int | None: ...
    @property
    def balance(self) -> Sequence[BalanceTest]: ...
    @property
    def rom(self) -> Sequence[RangeOfMotion]: ...
    @property
    def strength(self) -> Sequence[MuscleTest]: ...


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


def _fmt(x: float) -> str:
    return str(_num(x))


@dataclass(frozen=True)
class Deficit:
    """A measurement beyond its norm's limit, with everything needed to explain it."""

    item: str  # where in the request: "pain", "balance[0]", "rom[2]", "strength[1]"
    measure: codes.Measure
    norm: Norm
    measured: float  # as recorded; for muscle tests the base grade
    severity: Severity
    percent_of_norm: float | None
    side: str | None = None
    joint: str | None = None
    motion: str | None = None
    mode: str | None = None
    muscle_group: str | None = None
    grade: str | None = None  # muscle test grade as written, e.g. "3+"
    conditions: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """What was measured, in words: ``left knee flexion (active)``."""
        side = f"{self.side} " if self.side else ""
        if self.muscle_group is not None:
            return f"{side}{codes.MUSCLE_GROUPS[self.muscle_group].display.lower()} muscle grade"
        mode = f" ({self.mode})" if self.mode else ""
        cond = f" ({', '.join(self.conditions.values())})" if self.conditions else ""
        return f"{side}{self.measure.label}{mode}{cond}"

    @property
    def explanation(self) -> str:
        n = self.norm
        shown = self.grade if self.grade is not None else codes.with_unit(self.measured, n.unit)
        pct = "" if self.percent_of_norm is None else f"; {_fmt(self.percent_of_norm)}% of it"
        return (
            f"{self.subject[0].upper()}{self.subject[1:]} {shown} is {n.direction} the limit "
            f"{codes.with_unit(n.limit, n.unit)} ({n.kind} {codes.with_unit(n.value, n.unit)}{pct}): "
            f"{self.severity} (source: {n.source.key})."
        )

    def to_event(self, observation_id: str | None) -> dict[str, Any]:
        """The deficit as it appears in ``evaluation.completed.v1`` (see observations module)."""
        n = self.norm
        return {
            "item": self.item,
            "observationId": observation_id,
            "measure": self.measure.key,
            "code": dict(self.measure.coding),
            "kind": self.measure.kind,
            "side": self.side,
            "joint": self.joint,
            "motion": self.motion,
            "mode": self.mode,
            "muscleGroup": self.muscle_group,
            "conditions": dict(self.conditions),
            "measured": _num(self.measured),
            "grade": self.grade,
            "unit": n.unit,
            "norm": {
                "value": _num(n.value),
                "limit": _num(n.limit),
                "direction": n.direction,
                "kind": n.kind,
                "appliesTo": n.conditions(),
                "source": n.source.key,
                "citation": n.source.citation,
            },
            "percentOfNorm": self.percent_of_norm,
            "severity": self.severity,
            "explanation": self.explanation,
        }


@dataclass(frozen=True)
class Assessment:
    """One measurement compared with its norm; ``deficit`` is None when it is within the norm."""

    item: str
    norm: Norm
    deficit: Deficit | None


def _judge(norm: Norm, measured: float, compared: float, **details: Any) -> Deficit | None:
    if not norm.is_deficit(compared):
        return None
    percent = norm.percent_of_norm(measured)
    severity = norm.severity.grade(compared, norm.percent_of_norm(compared), norm.direction)
    return Deficit(
        measure=codes.measure(norm.measure),
        norm=norm,
        measured=measured,
        severity=severity,
        percent_of_norm=percent,
        **details,
    )


def assess(ev: Evaluation, norms: NormativeTable | None = None) -> list[Assessment]:
    """Every measurement of ``ev`` that a norm applies to, judged against it."""
    table = norms or load_norms()
    out: list[Assessment] = []

    def judge(
        item: str, norm: Norm | None, measured: float, compared: float | None = None, **kw: Any
    ) -> None:
        if norm is not None:
            deficit = _judge(norm, measured, measured if compared is None else compared, item=item, **kw)
            out.append(Assessment(item, norm, deficit))

    if ev.pain is not None:
        judge("pain", table.norm_for("pain"), ev.pain)
    for i, b in enumerate(ev.balance):
        conditions = {
            k: v for k, v in (("vision", b.vision), ("surface", b.surface), ("stance", b.stance)) if v
        }
        norm = table.norm_for(b.test, age=ev.age_years, vision=b.vision, surface=b.surface)
        judge(f"balance[{i}]", norm, b.value, side=b.side, conditions=conditions)
    for i, r in enumerate(ev.rom):
        judge(
            f"rom[{i}]",
            table.norm_for(r.measure.key),
            r.degrees,
            side=r.side,
            joint=r.joint,
            motion=r.motion,
            mode=r.mode,
        )
    for i, s in enumerate(ev.strength):
        compared = s.base_grade - 0.5 if s.modifier == "-" else s.base_grade
        judge(
            f"strength[{i}]",
            table.norm_for("mmt-grade"),
            s.base_grade,
            compared,
            side=s.side,
            muscle_group=s.muscle_group,
            grade=s.grade,
        )
    return out


def find_deficits(ev: Evaluation, norms: NormativeTable | None = None) -> list[Deficit]:
    """The deficits of ``ev``, in request order (pain, balance, range of motion, strength)."""
    return [a.deficit for a in assess(ev, norms) if a.deficit is not None]
