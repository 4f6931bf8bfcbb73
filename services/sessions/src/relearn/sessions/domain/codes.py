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
