"""Codes of the session log: settings, assistance levels, ROM methods, progression dimensions, cues."""

from __future__ import annotations

from typing import Literal

Setting = Literal["clinic", "home"]
Assistance = Literal["none", "minimal", "moderate", "maximal"]
RomMethod = Literal["goniometer", "inclinometer", "device"]

# The progression dimensions of the brief (joints, motion, load bearing, proprioception, resistance, tempo).
DIMENSIONS: tuple[str, ...] = ("joints", "motion", "loadBearing", "proprioception", "resistance", "tempo")

# Cues, techniques and apparatus (local CodeSystem https://relearn.health/fhir/CodeSystem/cue-technique).
# The seed names them: motion and task modeling, pressure biofeedback, one-to-one instruction, taping and
# bracing, tactile cueing, audiovisual aids, imagery, dumbbells, EMG, balance boards.
CUES: dict[str, str] = {
    "tactile-cueing": "Tactile cueing",
    "verbal-cueing": "Verbal cueing",
    "visual-cueing": "Visual cueing",
    "mirror": "Mirror feedback",
    "task-modeling": "Motion and task modeling",
    "one-to-one-instruction": "One-to-one instruction",
    "audiovisual-aids": "Audiovisual aids",
    "pressure-biofeedback": "Pressure biofeedback",
    "emg-biofeedback": "EMG biofeedback",
    "imagery": "Motor imagery",
    "taping": "Taping",
    "bracing": "Bracing",
    "balance-board": "Balance board",
    "unstable-surface": "Unstable surface (foam, cushion)",
    "free-weights": "Free weights (dumbbells)",
    "resistance-band": "Elastic resistance band",
    "metronome": "Metronome pacing",
    "manual-assistance": "Manual assistance",
    "mechanical-assistance": "Mechanical assistance (sling, pulley, suspension)",
}


# CPT codes of the physical medicine and rehabilitation procedures (AMA CPT). An exercise of a clinic
# session carries the code the plan service gave its activity's form (plan events' ``activities[].cpt``; the
# rule is in docs/progression-rules.md): 97110 therapeutic exercise (single-joint, non-weight-bearing), 97112
# neuromuscular re-education (balance, proprioceptive challenge), 97530 therapeutic activities (multi-joint
# and weight-bearing). An exercise recorded against a plan event without it gets DEFAULT_CPT.
# Home practice carries no CPT code: these codes bill direct contact with a provider.
CPT = "http://www.ama-assn.org/go/cpt"
CPT_CODES: dict[str, str] = {
    "97110": "Therapeutic exercises to develop strength and endurance, range of motion and flexibility",
    "97112": "Neuromuscular reeducation of movement, balance, coordination, kinesthetic sense, posture, "
    "and/or proprioception for sitting and/or standing activities",
    "97530": "Therapeutic activities, direct (one-on-one) patient contact (use of dynamic activities to "
    "improve functional performance)",
}
DEFAULT_CPT = "97112"
