"""Standard outcome measures, their minimal clinically important differences and the trend verdict."""

# Codes: LOINC only where a code was verified for us (six-minute walk distance 64098-7, as HL7 Denmark's
# published 6MWT profile fixes it). No LOINC code could be verified for the Berg Balance Scale (the brief
# says so), the Fugl-Meyer, the 10-metre walk, five-times sit-to-stand, the Functional Gait Assessment,
# the ARAT or the Modified Ashworth Scale: those use the local CodeSystem (group ``outcome-measure``)
# and a ConceptMap can add LOINC later without changing the data.
#
# Each measure carries the change that counts, with its published source and the population it was
# measured in. Where the literature gives a range, the upper end is used (a trend must clear it), and
# the Modified Ashworth Scale, an ordinal scale, counts steps of its grades (0, 1, 1+, 2, 3, 4).

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Better = Literal["higher", "lower"]
Verdict = Literal[
    "improved-beyond-mcid", "improved-within-mcid", "no-change", "worse-within-mcid", "worse-beyond-mcid"
]


@dataclass(frozen=True)
class Mcid:
    value: float
    kind: Literal["MCID", "MDC95"]  # a minimal detectable change where no MCID is established
    population: str
    source: str


@dataclass(frozen=True)
class OutcomeMeasure:
    key: str
    label: str
    system: Literal["loinc", "local"]
    code: str  # the LOINC code, or the local code of the evaluation CodeSystem
    unit: str  # UCUM; "{score}" for scales, "{grade}" for the Modified Ashworth grade
    better: Better
    low: float
    high: float
    mcid: Mcid
    whole: bool = False  # a scale total: whole numbers only
    needs_side: bool = False
    needs_muscle_group: bool = False


# Modified Ashworth grades in order; the value recorded is the grade, the trend counts steps.
ASHWORTH_GRADES = ("0", "1", "1+", "2", "3", "4")

OUTCOME_MEASURES: dict[str, OutcomeMeasure] = {
    m.key: m
    for m in (
        OutcomeMeasure(
            "berg",
            "Berg Balance Scale",
            "local",
            "berg-balance-scale",
            "{score}",
            "higher",
            0,
            56,
            Mcid(
                6.9,
                "MDC95",
                "chronic stroke",
                "Stevenson TJ. Detecting change in patients with stroke using the Berg Balance Scale. "
                "Aust J Physiother 2001;47:29-38.",
            ),
            whole=True,
        ),
        OutcomeMeasure(
            "fugl-meyer-ue",
            "Fugl-Meyer Assessment, upper extremity motor",
            "local",
            "fugl-meyer-ue",
            "{score}",
            "higher",
            0,
            66,
            Mcid(
                7.25,
                "MCID",
                "chronic stroke, minimal to moderate impairment (range 4.25-7.25)",
                "Page SJ, Fulk GD, Boyne P. Clinically important differences for the upper-extremity "
                "Fugl-Meyer Scale in people with minimal to moderate impairment due to chronic stroke. "
                "Phys Ther 2012;92:791-798.",
            ),
            whole=True,
            needs_side=True,
        ),
        OutcomeMeasure(
            "ten-metre-walk",
            "10-metre walk test, comfortable gait speed",
            "local",
            "ten-metre-walk-speed",
            "m/s",
            "higher",
            0,
            3,
            Mcid(
                0.16,
                "MCID",
                "subacute stroke (first 60 days)",
                "Tilson JK, Sullivan KJ, Cen SY, et al. Meaningful gait speed improvement during the first "
                "60 days poststroke: minimal clinically important difference. Phys Ther 2010;90:196-208.",
            ),
        ),
        OutcomeMeasure(
            "six-minute-walk",
            "6-minute walk test distance",
            "loinc",
            "64098-7",
            "m",
            "higher",
            0,
            1000,
            Mcid(
                34.4,
                "MCID",
                "chronic stroke",
                "Tang A, Eng JJ, Rand D. Relationship between perceived and measured changes in walking "
                "after stroke. J Neurol Phys Ther 2012;36:115-121.",
            ),
        ),
        OutcomeMeasure(
            "five-times-sit-to-stand",
            "Five-times sit-to-stand time",
            "local",
            "five-times-sit-to-stand",
            "s",
            "lower",
            0,
            120,
            Mcid(
                2.3,
                "MCID",
                "adults in vestibular rehabilitation",
                "Meretta BM, Whitney SL, Marchetti GF, et al. The five times sit to stand test: "
                "responsiveness to change and concurrent validity in adults undergoing vestibular "
                "rehabilitation. J Vestib Res 2006;16:233-243.",
            ),
        ),
        OutcomeMeasure(
            "functional-gait-assessment",
            "Functional Gait Assessment",
            "local",
            "functional-gait-assessment",
            "{score}",
            "higher",
            0,
            30,
            Mcid(
                4.2,
                "MCID",
                "community-dwelling older adults",
                "Beninato M, Fernandes A, Plummer LS. Minimal clinically important difference of the "
                "functional gait assessment in older adults. Phys Ther 2014;94:1594-1603.",
            ),
            whole=True,
        ),
        OutcomeMeasure(
            "arat",
            "Action Research Arm Test",
            "local",
            "action-research-arm-test",
            "{score}",
            "higher",
            0,
            57,
            Mcid(
                5.7,
                "MCID",
                "chronic stroke",
                "van der Lee JH, De Groot V, Beckerman H, et al. The intra- and interrater reliability of "
                "the Action Research Arm Test. Arch Phys Med Rehabil 2001;82:14-19.",
            ),
            whole=True,
            needs_side=True,
        ),
        OutcomeMeasure(
            "modified-ashworth",
            "Modified Ashworth Scale",
            "local",
            "modified-ashworth-scale",
            "{grade}",
            "lower",
            0,
            len(ASHWORTH_GRADES) - 1,
            Mcid(
                1,
                "MCID",
                "stroke; the MCID found is below one grade, so one grade step (e.g. 1+ to 1) clears it",
                "Chen CL, Chen CY, Chen HC, et al. Responsiveness and minimal clinically important "
                "difference of Modified Ashworth Scale in patients with stroke. Eur J Phys Rehabil Med "
                "2019;55:754-760.",
            ),
            needs_side=True,
            needs_muscle_group=True,
        ),
    )
}


def ashworth_step(grade: str) -> int:
    """The rank of a Modified Ashworth grade (0 for "0" ... 5 for "4"); ValueError for another."""
    try:
        return ASHWORTH_GRADES.index(grade)
    except ValueError:
        raise ValueError(
            f"{grade!r} is not a Modified Ashworth grade ({', '.join(ASHWORTH_GRADES)})"
        ) from None


def verdict(measure: OutcomeMeasure, baseline: float, latest: float) -> tuple[float, Verdict]:
    """The change from baseline to latest (in the measure's unit or grade steps) and what it means.

    ``improved-beyond-mcid`` when the change in the better direction reaches the MCID (or MDC95).
    """
    change = latest - baseline
    gain = change if measure.better == "higher" else -change
    threshold = measure.mcid.value - 1e-9
    if gain >= threshold:
        return change, "improved-beyond-mcid"
    if gain <= -threshold:
        return change, "worse-beyond-mcid"
    if gain > 0:
        return change, "improved-within-mcid"
    if gain < 0:
        return change, "worse-within-mcid"
    return change, "no-change"
