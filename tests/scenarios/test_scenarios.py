"""Issue 12's clinical scenarios, table-driven, through the public APIs with the real broker.

Each row is one fresh patient: an evaluation (fall-risk screening in ``Setup``), a plan drafted from it and
reviewed to the row's exercises and rules, then the row's steps - sessions through the sessions API with
synthetic EMG and force-plate trials through the device gateway, 24-hour responses, therapist overrides - and
the decision the last step must have produced, with the words of its explanation and, where the engine lists
them, the status of each mastery criterion (pass / fail / missing / waived).

Every row runs the real thing and must hold: no row is marked expected-to-fail.

What the rows read (docs/progression-rules.md): a decision's ``criteria`` (criterion key, muscle, value,
target, source Observation, status), a ``task`` decision and the FHIR Task it raises (``GET /fhir/Task``),
waivers (``PUT /plans/{id}/waivers``), Task answers (``POST /plans/{id}/tasks/{tid}/approve``) and the
``safety`` rules (fall-risk thresholds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from relearn.devtools.journey.plan import session_record

from .clinic import (
    AnswerTask,
    BalanceTrial,
    Check,
    Clinic,
    CloseStreams,
    DualTaskTrial,
    EmgTrial,
    Expect,
    Override,
    Session,
    Setup,
    Step,
    Symptoms,
    Waive,
    clean,
)
from .signals import Burst

pytestmark = pytest.mark.slow

KNEE = "knee-extension"
PELVIC = "pelvic-tilt"
BALANCE = "standing-balance"
KNEE_FLEX = "knee-flexion"
MUSCLES = {"vmo": "vastus-medialis", "vl": "vastus-lateralis", "bf": "biceps-femoris"}
MVC = {"vmo": 0.25, "vl": 0.25, "bf": 0.25}
PAIR = (("vmo", "bf"),)


def knee_emg(
    vmo: float | None = 95.0,
    vl: float | None = 100.0,
    bf: float | None = 100.0,
    *,
    vmo_activation: float = 40.0,
    bf_activation: float = 5.0,
    vmo_gain: float = 1.0,
    reference: str | None = "vl",
    cue: bool = True,
    pairs: tuple[tuple[str, str], ...] | None = PAIR,
    mvc: dict[str, float] | None = None,
    close_late: bool = False,
) -> EmgTrial:
    """A knee-extension trial: VMO, VL and BF bursts at these onsets (ms after the cue), channels bound to
    their muscles, VMO timed against VL, the VMO/BF pair declared, MVC per channel (scaled by VMO's gain)."""
    return EmgTrial(
        bursts=(
            Burst("vmo", vmo, activation=vmo_activation, gain=vmo_gain),
            Burst("vl", vl),
            Burst("bf", bf, activation=bf_activation),
        ),
        muscles=MUSCLES,
        reference=reference,
        cue=cue,
        pairs=pairs,
        mvc=mvc if mvc is not None else {**MVC, "vmo": MVC["vmo"] * vmo_gain},
        close_late=close_late,
    )


def knee(n: int, **kwargs: Any) -> list[Session]:
    """``n`` knee-extension sessions with every criterion measured and met: ROM 95 deg by goniometer, VMO
    5 ms before VL, low VMO/BF co-contraction (unless ``kwargs`` say otherwise)."""
    kwargs.setdefault("rom", 95.0)
    kwargs.setdefault("emg", knee_emg())
    return [Session(**kwargs) for _ in range(n)]


def balance(n: int, **kwargs: Any) -> list[Session]:
    kwargs.setdefault("balance", BalanceTrial())
    return [Session(**kwargs) for _ in range(n)]


@dataclass(frozen=True)
class Row:
    name: str
    setup: Setup
    steps: Sequence[Step]
    expect: Expect


NOT_AT_RISK = Setup(patterns=(PELVIC,))
ONE_SESSION = {"mastery": {"consecutiveSessions": 1}}
KNEE_SETUP = Setup(patterns=(KNEE,))
BALANCE_SETUP = Setup(patterns=(BALANCE,))
# The exercise's order of dimensions when a row is about load (tempo first keeps stages and levels out of it).
LOAD_SETUP = Setup(patterns=(KNEE,), rules={"advance": {"dimensionOrder": ["tempo"]}})
EMG_WAIVED = [Waive("emg-onset-latency", "vastus-medialis"), Waive("co-contraction", "vastus-medialis")]

ROWS: list[Row] = [
    # ---------- 1. evidence gates ---------------------------------------------------------------------------
    Row(
        "1 three qualifying sessions advance exactly one dimension",
        NOT_AT_RISK,
        clean(3),
        Expect("advance", ("mastered", "joints 0 -> 1"), dimension="joints", to=1),
    ),
    Row(
        "1 missing EMG evidence blocks the advance and says which muscle",
        KNEE_SETUP,
        knee(3, emg=None),
        Expect(
            "hold",
            ("waits for evidence", "EMG onset latency of vastus-medialis"),
            criteria={
                "emg-onset-latency vastus-medialis": "missing",
                "co-contraction vastus-medialis biceps-femoris": "missing",
                "rom": "pass",
            },
            absent=("advance",),
        ),
    ),
    Row(
        "1 a therapist's waiver lets the advance through and is shown",
        KNEE_SETUP,
        [*EMG_WAIVED, *knee(3, emg=None)],
        Expect(
            "advance",
            ("joints 0 -> 1", "waived"),
            criteria={"emg-onset-latency vastus-medialis": "waived", "rom": "pass"},
        ),
    ),
    Row(
        "1 a muscle that never activates fails the onset criterion: no advance, and no 'waits for evidence'",
        KNEE_SETUP,
        knee(3, emg=knee_emg(vmo=None)),
        Expect(absent=("advance", "hold")),
    ),
    Row(
        "1 a paretic muscle at 3x the noise has no onset: a measured failure, not missing evidence",
        KNEE_SETUP,
        knee(3, emg=knee_emg(vmo=100.0, vmo_activation=3.0)),
        Expect(absent=("advance", "hold")),
    ),
    Row(
        "1 ROM below the criterion by goniometer is a failure: no advance, and no 'waits for evidence'",
        Setup(patterns=(KNEE_FLEX,)),
        clean(3, rom=95.0),
        Expect(absent=("advance", "hold")),
    ),
    Row(
        "1 ROM within the criterion advances, citing the ROM Observation",
        Setup(patterns=(KNEE_FLEX,)),
        clean(3, rom=125.0),
        Expect("advance", ("joints 0 -> 1",), criteria={"rom": "pass"}, evidence_sources=True),
    ),
    Row(
        "1 standing balance does not climb on the quality rating alone",
        BALANCE_SETUP,
        clean(3),
        Expect(
            "hold",
            ("waits for evidence", "sway area"),
            criteria={"sway-area": "missing", "sway-velocity": "missing"},
            absent=("advance",),
        ),
    ),
    Row(
        "1 standing balance with force-plate sway within target advances, citing the sway Observations",
        BALANCE_SETUP,
        balance(3),
        Expect(
            "advance",
            ("load bearing 0 -> 1",),
            dimension="loadBearing",
            to=1,
            criteria={"sway-area": "pass", "sway-velocity": "pass"},
            evidence_sources=True,
        ),
    ),
    Row(
        "1 sway beyond the target (6x the excursions: about 12 cm2, 3 cm/s) is a failure, not missing",
        BALANCE_SETUP,
        balance(3, balance=BalanceTrial(sway_scale=6.0)),
        Expect(absent=("advance", "hold")),
    ),
    Row(
        "1 the decision waits for the metrics of the session's streams",
        KNEE_SETUP,
        [
            *knee(2),
            *knee(1, emg=knee_emg(close_late=True)),
            Check(Expect(absent=("advance", "hold"), settled=False)),
            CloseStreams(),
        ],
        Expect("advance", ("joints 0 -> 1",), criteria={"emg-onset-latency vastus-medialis": "pass"}),
    ),
    Row(
        "1 a late metric contradicting an advance produces a correcting version",
        KNEE_SETUP,
        [*knee(2), *knee(1, late_emg=knee_emg(vmo=140.0))],
        Expect("regress", ("correction", "vastus-medialis"), dimension="joints", to=0),
    ),
    # ---------- 2. one change at a time ---------------------------------------------------------------------
    Row(
        "2 pelvic control through sit-to-stand waits for load bearing: load bearing advances instead",
        Setup(patterns=(PELVIC,), rules={"advance": {"dimensionOrder": ["joints", "loadBearing"]}}),
        [Override(levels={"joints": 1}), *clean(3)],
        Expect("advance", ("load bearing 0 -> 1", "full-weight-bearing"), dimension="loadBearing", to=1),
    ),
    Row(
        "2 knee extension's sit-to-stand waits for full weight bearing",
        Setup(patterns=(KNEE,), rules={"advance": {"dimensionOrder": ["joints", "loadBearing"]}}),
        [Override(levels={"joints": 1}), *knee(3)],
        Expect("advance", ("load bearing 0 -> 1",), dimension="loadBearing", to=1),
    ),
    Row(
        "2 not at fall risk (Berg 54, TUG 9 s) a load-bearing advance is applied",
        Setup(patterns=(PELVIC,), rules={"advance": {"dimensionOrder": ["loadBearing"]}}),
        clean(3),
        Expect("advance", ("load bearing 0 -> 1",), dimension="loadBearing", to=1),
    ),
    Row(
        "2 Berg 38: the load-bearing advance becomes a Task for the therapist",
        Setup(patterns=(PELVIC,), berg=38, rules={"advance": {"dimensionOrder": ["loadBearing"]}}),
        clean(3),
        Expect("task", ("fall risk", "Berg 38 < 45", "load bearing 0 -> 1"), absent=("advance",)),
    ),
    Row(
        "2 TUG 15 s: the proprioception advance becomes a Task for the therapist",
        Setup(patterns=(PELVIC,), tug=15.0, rules={"advance": {"dimensionOrder": ["proprioception"]}}),
        clean(3),
        Expect("task", ("fall risk", "TUG 15 s > 13.5 s", "proprioception 0 -> 1"), absent=("advance",)),
    ),
    Row(
        "2 the therapist approves the fall-risk Task and the advance is applied",
        Setup(patterns=(PELVIC,), berg=38, rules={"advance": {"dimensionOrder": ["loadBearing"]}}),
        [*clean(3), AnswerTask(approve=True)],
        Expect("advance", ("load bearing 0 -> 1",), dimension="loadBearing", to=1),
    ),
    Row(
        "2 the therapist rejects the fall-risk Task: the next session does not advance",
        Setup(patterns=(PELVIC,), berg=38, rules={"advance": {"dimensionOrder": ["loadBearing"]}}),
        [*clean(3), AnswerTask(approve=False, reason="not yet: wait for the walking aid"), Session()],
        Expect(absent=("advance",)),
    ),
    Row(
        "2 the fall-risk threshold is configurable per plan (Berg 47 under 50)",
        Setup(
            patterns=(PELVIC,),
            berg=47,
            rules={"advance": {"dimensionOrder": ["loadBearing"]}, "safety": {"fallRiskBergBelow": 50}},
        ),
        clean(3),
        Expect("task", ("fall risk", "Berg 47 < 50"), absent=("advance",)),
    ),
    # ---------- 3. right muscle, right clock ----------------------------------------------------------------
    Row(
        "3 VMO lagging VL by 40 ms fails even when BF fires 60 ms early (no averaging)",
        KNEE_SETUP,
        knee(3, emg=knee_emg(vmo=140.0, bf=40.0, bf_activation=40.0)),
        Expect(absent=("advance", "hold")),
    ),
    Row(
        "3 VMO firing before VL passes and the advance cites the EMG Observations",
        KNEE_SETUP,
        knee(3),
        Expect(
            "advance",
            ("joints 0 -> 1",),
            criteria={"emg-onset-latency vastus-medialis": "pass", "rom": "pass"},
            evidence_sources=True,
        ),
    ),
    Row(
        "3 no reference channel and no cue: onset latency is missing, never timed from the recording start",
        KNEE_SETUP,
        knee(3, emg=knee_emg(reference=None, cue=False)),
        Expect(
            "hold",
            ("waits for evidence", "EMG onset latency"),
            criteria={"emg-onset-latency vastus-medialis": "missing"},
            absent=("advance",),
        ),
    ),
    Row(
        "3 a 3x electrode gain does not move %MVC-normalised co-contraction",
        KNEE_SETUP,
        knee(3, emg=knee_emg(vmo_gain=3.0)),
        Expect("advance", ("joints 0 -> 1",), criteria={"co-contraction vastus-medialis": "pass"}),
    ),
    Row(
        "3 co-contraction only for declared pairs: co-active synergists do not fail it",
        KNEE_SETUP,
        knee(3, emg=knee_emg(vmo=100.0, vl=100.0)),
        Expect("advance", ("joints 0 -> 1",), criteria={"co-contraction biceps-femoris": "pass"}),
    ),
    Row(
        "3 no pair declared: co-contraction is missing",
        KNEE_SETUP,
        knee(3, emg=knee_emg(pairs=())),
        Expect(
            "hold",
            ("waits for evidence", "co-contraction"),
            criteria={"co-contraction": "missing"},
            absent=("advance",),
        ),
    ),
    Row(
        "3 no MVC: co-contraction is not computable, so missing",
        KNEE_SETUP,
        knee(3, emg=knee_emg(mvc={})),
        Expect(
            "hold",
            ("waits for evidence", "co-contraction"),
            criteria={"co-contraction": "missing"},
            absent=("advance",),
        ),
    ),
    # ---------- 4. symptoms and load ------------------------------------------------------------------------
    Row(
        "4 pain 6/10 after a session regresses the last-advanced dimension",
        NOT_AT_RISK,
        [*clean(3), Session(pain_after=6)],
        Expect("regress", ("pain 6/10", "joints 1 -> 0"), dimension="joints", to=0),
    ),
    Row(
        "4 a 24-hour flare regresses the last-advanced dimension",
        NOT_AT_RISK,
        [*clean(3), Session(pain24h=None), Symptoms(pain24h=4, flare=True)],
        Expect("regress", ("flare", "joints 1 -> 0"), dimension="joints", to=0),
    ),
    Row(
        "4 acceptable pain (4/10) holds and restarts the count",
        NOT_AT_RISK,
        [*clean(2), Session(pain_after=4)],
        Expect("hold", ("acceptable",), absent=("advance",)),
    ),
    Row(
        "4 pain 7/10 at the simplest form holds and asks for review",
        NOT_AT_RISK,
        [Session(pain_after=7)],
        Expect("hold", ("pain 7/10", "simplest form"), absent=("regress", "advance")),
    ),
    Row(
        "4 a load step states its true change (10 kg -> 10.5 kg is +5 %)",
        LOAD_SETUP,
        [Override(dose={"loadKg": 10.0}), *clean(2, reps=12, load_kg=10.0)],
        Expect("dose-change", ("10 kg -> 10.5 kg", "+5.0 %"), to=10.5),
    ),
    Row(
        "4 pain 7/10 after a load increase regresses the load",
        LOAD_SETUP,
        [
            Override(dose={"loadKg": 10.0}),
            *clean(2, reps=12, load_kg=10.0),
            Session(load_kg=10.5, pain_after=7),
        ],
        Expect("dose-change", ("pain 7/10", "undoing", "10.5 kg -> 10 kg"), to=10.0),
    ),
    Row(
        "4 0.5 kg -> 1.0 kg is +100 %: the load holds and another dimension is suggested",
        LOAD_SETUP,
        [Override(dose={"loadKg": 0.5}), *clean(2, reps=12, load_kg=0.5)],
        Expect("hold", ("+100 %", "repetitions"), absent=("dose-change",)),
    ),
    Row(
        "4 5 kg -> 5.5 kg is +10 %: within the 10 % cap, so the load rises",
        LOAD_SETUP,
        [Override(dose={"loadKg": 5.0}), *clean(2, reps=12, load_kg=5.0)],
        Expect("dose-change", ("5 kg -> 5.5 kg", "+10.0 %"), to=5.5),
    ),
    Row(
        "4 the same advance undone twice by symptoms asks the therapist",
        Setup(patterns=(PELVIC,), rules=ONE_SESSION),
        [Session(), Session(pain_after=7), Session(), Session(pain_after=7)],
        Expect("task", ("joints",)),
    ),
    Row(
        "4 an advance undone twice is passed over until the therapist allows another try",
        Setup(patterns=(PELVIC,), rules=ONE_SESSION),
        [Session(), Session(pain_after=7), Session(), Session(pain_after=7), Session()],
        Expect("advance", ("passed over", "undone by symptoms 2 times"), dimension="motion"),
    ),
    Row(
        "4 pain steady at the patient's baseline (4/10) does not hold forever",
        Setup(patterns=(PELVIC,), pain=4),
        clean(3, pain_before=4, pain_after=4, pain24h=4),
        Expect("advance", ("joints 0 -> 1",)),
    ),
    Row(
        "4 24-hour pain not back to baseline holds",
        NOT_AT_RISK,
        [*clean(2), Session(pain_after=2, pain24h=4)],
        Expect("hold", ("baseline",), absent=("advance",)),
    ),
    Row(
        "4 pain before sessions rising week on week holds",
        NOT_AT_RISK,
        [
            Session(pain_before=1, pain_after=1, pain24h=1, after=timedelta(days=7)),
            Session(pain_before=2, pain_after=2, pain24h=2, after=timedelta(days=7)),
            Session(pain_before=4, pain_after=4, pain24h=4, after=timedelta(days=7)),
        ],
        Expect("hold", ("week",), absent=("advance",)),
    ),
    # ---------- 5. stages that follow the patient -----------------------------------------------------------
    Row(
        "5 a self-rating that agrees with the therapist: conscious incompetence",
        NOT_AT_RISK,
        [Session(quality=3, self_rating=3)],
        Expect("stage-change", ("self-rating 3/4 agrees",), to="conscious-incompetence"),
    ),
    Row(
        "5 advancing a level re-enters at conscious competence",
        NOT_AT_RISK,
        [Override(stage="unconscious-competence"), *clean(3, with_feedback=False)],
        Expect("stage-change", ("conscious competence",), to="conscious-competence"),
    ),
    Row(
        "5 a symptomatic regression drops the stage to conscious competence",
        NOT_AT_RISK,
        [*clean(3), Override(stage="unconscious-competence"), Session(pain_after=8)],
        Expect("stage-change", ("pain 8/10",), to="conscious-competence"),
    ),
    Row(
        "5 a marked feedback-free retention attempt 48 h later earns unconscious competence",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False),
            Session(with_feedback=False, dual_task_trial=DualTaskTrial("reps", 10, 10)),
            Session(with_feedback=False, retention_attempt=True, after=timedelta(hours=48)),
        ],
        Expect("stage-change", ("retention",), to="unconscious-competence"),
    ),
    Row(
        "5 a visit two days later is not a retention check unless marked",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False),
            Session(with_feedback=False, dual_task_trial=DualTaskTrial("reps", 10, 10)),
            Session(with_feedback=False, retention_attempt=False, after=timedelta(hours=48)),
        ],
        Expect(absent=("stage-change",)),
    ),
    Row(
        "5 daily sessions 23 h 15 min apart: a marked retention attempt counts",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False, after=timedelta(hours=22, minutes=30)),
            Session(
                with_feedback=False,
                dual_task_trial=DualTaskTrial("reps", 10, 10),
                after=timedelta(hours=22, minutes=30),
            ),
            Session(with_feedback=False, retention_attempt=True, after=timedelta(hours=22, minutes=30)),
        ],
        Expect("stage-change", ("retention",), to="unconscious-competence"),
    ),
    Row(
        "5 a retention attempt 80 h after the last practice does not count",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False),
            Session(with_feedback=False, dual_task_trial=DualTaskTrial("reps", 10, 10)),
            Session(with_feedback=False, retention_attempt=True, after=timedelta(hours=80)),
        ],
        Expect(absent=("stage-change",)),
    ),
    Row(
        "5 improving under a dual task does not block unconscious competence",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False),
            Session(with_feedback=False, dual_task_trial=DualTaskTrial("reps", 10, 12)),
            Session(with_feedback=False, retention_attempt=True, after=timedelta(hours=48)),
        ],
        Expect("stage-change", ("dual-task",), to="unconscious-competence"),
    ),
    Row(
        "5 a 20 % deterioration under a dual task blocks unconscious competence",
        NOT_AT_RISK,
        [
            Override(stage="conscious-competence"),
            Session(with_feedback=False),
            Session(
                with_feedback=False,
                dual_task_trial=DualTaskTrial("sway-area", 5.0, 6.0, lower_is_better=True, unit="cm2"),
            ),
            Session(with_feedback=False, retention_attempt=True, after=timedelta(hours=48)),
        ],
        Expect(absent=("stage-change",)),
    ),
    # ---------- 7. every decision explains itself -----------------------------------------------------------
    Row(
        "7 an advance lists every criterion: measured ones with their Observation, waived ones as waived",
        KNEE_SETUP,
        [*EMG_WAIVED, *knee(3, emg=None)],
        Expect(
            "advance",
            ("joints 0 -> 1",),
            criteria={
                "rom": "pass",
                "quality": "pass",
                "reps": "pass",
                "emg-onset-latency vastus-medialis": "waived",
                "co-contraction vastus-medialis": "waived",
            },
            evidence_sources=True,
            event=True,
        ),
    ),
    Row(
        "7 an advance on EMG evidence lists onset and co-contraction with their Observations",
        KNEE_SETUP,
        knee(3),
        Expect(
            "advance",
            ("joints 0 -> 1",),
            criteria={
                "rom": "pass",
                "emg-onset-latency vastus-medialis": "pass",
                "co-contraction vastus-medialis": "pass",
            },
            evidence_sources=True,
        ),
    ),
    Row(
        "7 a hold shows its criteria in the CarePlan an EHR reads and in the plan event",
        KNEE_SETUP,
        knee(3, emg=None),
        Expect(
            "hold",
            ("waits for evidence",),
            criteria={"emg-onset-latency vastus-medialis": "missing"},
            careplan=("EMG onset latency", "missing"),
            event=True,
        ),
    ),
]


@pytest.mark.parametrize(
    "row",
    [pytest.param(r, id=r.name) for r in ROWS],
)
def test_scenario(clinic: Clinic, row: Row) -> None:
    patient = clinic.patient(row.setup)
    for step in row.steps:
        step.run(patient)
    patient.check(row.expect)


# -- the table's inputs, checked through today's gateway -----------------------------------------------------


def _session_metrics(clinic: Clinic, setup: Setup, session: Session) -> list[dict[str, Any]]:
    """The device metrics the plan holds for one session of the setup's first exercise."""
    patient = clinic.patient(setup)
    session.run(patient)
    record = session_record(patient.plan(), setup.patterns[0], f"Encounter/{patient.last_session}")
    assert record is not None, "the plan did not count the session"
    metrics: list[dict[str, Any]] = record.get("metrics", [])
    return metrics


def test_synthetic_emg_onsets_reach_the_plan_as_set(clinic: Clinic) -> None:
    """VMO 40 ms after VL and BF 60 ms before it come out of the gateway as +40 / -60 ms against VL; a burst
    at 3x the resting noise (a weak paretic muscle) gives no onset at all."""
    trial = EmgTrial(
        bursts=(
            Burst("vmo", 140.0),
            Burst("vl", 100.0),
            Burst("bf", 40.0),
            Burst("rf", 100.0, activation=3.0),
        ),
        reference="vl",
    )
    metrics = _session_metrics(clinic, KNEE_SETUP, Session(emg=trial))
    onsets = {m["channel"]: m for m in metrics if m["kind"] == "emg-onset-latency"}
    detected = {ch: m["value"] for ch, m in onsets.items() if m.get("status", "measured") == "measured"}
    assert set(detected) == {"vmo", "bf"}, onsets
    # No onset for RF: no metric at all, or (contract B) a measured failure without a value.
    assert onsets.get("rf", {"status": "not-detected"}).get("status") == "not-detected", onsets
    assert detected["vmo"] == pytest.approx(40.0, abs=5.0)
    assert detected["bf"] == pytest.approx(-60.0, abs=5.0)


@pytest.mark.parametrize(("scale", "within"), [(1.0, True), (6.0, False)])
def test_scaled_balance_trials_fall_either_side_of_the_sway_targets(
    clinic: Clinic, scale: float, within: bool
) -> None:
    """The standing-balance criteria are sway area <= 10 cm2 and velocity <= 2.5 cm/s: the recorded trial is
    well within them, its excursions x6 beyond both."""
    metrics = _session_metrics(clinic, BALANCE_SETUP, Session(balance=BalanceTrial(sway_scale=scale)))
    values = {m["kind"]: m["value"] for m in metrics}
    assert {"sway-area", "sway-velocity"} <= set(values), values
    assert (values["sway-area"] <= 10.0 and values["sway-velocity"] <= 2.5) is within, values
    if not within:
        assert values["sway-area"] > 10.0 and values["sway-velocity"] > 2.5, values
