"""Which CPT code a prescribed exercise is billed under, read from its pattern and its current form.

CPT (AMA; the CMS physical medicine and rehabilitation timed codes) names three kinds of therapeutic exercise
a neuromuscular re-education course moves through:

- **97110 therapeutic exercise**: exercises to develop strength and endurance, range of motion and
  flexibility: the course's starting forms, single-joint movement patterns in non-weight-bearing positions;
- **97112 neuromuscular re-education** of movement, balance, coordination, kinesthetic sense, posture and/or
  proprioception for sitting and/or standing activities: the balance patterns, and any pattern once its
  proprioception ladder has left "eyes open, stable surface" (eyes closed, foam, tandem, perturbation);
- **97530 therapeutic activities**: dynamic activities to improve functional performance: a pattern once it is
  both multi-joint (or a functional task) and weight-bearing (partial or full weight on the limb).

The rule, first match wins (documented in docs/progression-rules.md):

1. the pattern's region is ``balance``, or its proprioception step ranks above ``eyes-open-stable`` -> 97112;
2. its joints step ranks at least ``multi-joint`` and its load-bearing step at least
   ``partial-weight-bearing`` -> 97530;
3. otherwise -> 97110.

The code follows the plan: an advance along joints or load bearing (or proprioception) may change it, and a
session's Procedure carries the code of the form the activity had when the exercise was recorded. SNOMED CT
codes the three alike as 229065009 *Exercise therapy* (the concept the brief verified); no finer concept per
CPT code was verified, so none is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from relearn.plan.domain.patterns import STEP_KINDS, Dimension, MovementPattern

CPT_SYSTEM: Final = "http://www.ama-assn.org/go/cpt"
CPT_DISPLAY: Final[dict[str, str]] = {
    "97110": "Therapeutic exercises to develop strength and endurance, range of motion and flexibility",
    "97112": "Neuromuscular reeducation of movement, balance, coordination, kinesthetic sense, posture, "
    "and/or proprioception",
    "97530": "Therapeutic activities, direct patient contact (dynamic activities to improve functional "
    "performance)",
}


def _rank(pattern: MovementPattern, levels: Mapping[Dimension, int], dimension: Dimension) -> int:
    steps = pattern.ladders[dimension]
    level = min(max(levels.get(dimension, 0), 0), len(steps) - 1)
    return STEP_KINDS[dimension][steps[level].kind]


def cpt_code(pattern: MovementPattern, levels: Mapping[Dimension, int]) -> str:
    """97112, 97530 or 97110 for ``pattern`` at ``levels`` (the rule in the module docstring)."""
    if pattern.region == "balance" or _rank(pattern, levels, Dimension.PROPRIOCEPTION) > 0:
        return "97112"
    multi_joint = _rank(pattern, levels, Dimension.JOINTS) >= STEP_KINDS[Dimension.JOINTS]["multi-joint"]
    weight_bearing = (
        _rank(pattern, levels, Dimension.LOAD_BEARING)
        >= STEP_KINDS[Dimension.LOAD_BEARING]["partial-weight-bearing"]
    )
    if multi_joint and weight_bearing:
        return "97530"
    return "97110"


def cpt_coding(pattern: MovementPattern, levels: Mapping[Dimension, int]) -> dict[str, str]:
    code = cpt_code(pattern, levels)
    return {"system": CPT_SYSTEM, "code": code, "display": CPT_DISPLAY[code]}
