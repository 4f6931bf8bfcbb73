"""Device evidence from trial summaries (``device.trial-summarized.v1``): one event per metric of a trial,
one result per channel, one Observation for all of them. Each result is judged on its own, for its muscle;
a result that was not measured is never evidence of mastery; a re-delivered summary changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relearn.plan.domain.patterns import Dimension
from relearn.plan.domain.state import PlanState

KNEE = "knee-extension"
SYNERGIST = {"kind": "synergist", "channel": "ch2", "muscle": "vastus-lateralis"}


def _summary(
    session: str, stream: str, vm: dict[str, Any], other: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The onset-latency summary of one trial: vastus medialis (ch1) and, when given, biceps femoris (ch3);
    the synergist (ch2) has no latency to itself."""
    results = [{"channel": "ch1", "muscle": "vastus-medialis", "unit": "ms", "reference": SYNERGIST, **vm}]
    if other is not None:
        results.append(
            {"channel": "ch3", "muscle": "biceps-femoris", "unit": "ms", "reference": SYNERGIST, **other}
        )
    return {
        "device": "emg-1",
        "stream": stream,
        "session": session,
        "streamType": "emg",
        "metric": "emg-onset-latency",
        "unit": "ms",
        "trial": {"start": "2026-12-05T09:01:00+00:00", "end": "2026-12-05T09:01:30+00:00"},
        "observation": f"Observation/trial-{stream}-onset",
        "results": results,
    }


def _only_emg_onset_required(plan: PlanState) -> PlanState:
    waivers = tuple(w for w in plan.waivers if w.criterion != "emg-onset-latency")
    return plan.model_copy(update={"waivers": waivers, "screening": None})


def _course(clinic: Any, results: Callable[[int], tuple[dict[str, Any], dict[str, Any] | None]]) -> list[Any]:
    """Three sessions with a stream each, its trial summary, the stream complete, the 24-hour response."""
    outcomes = []
    for day in (0, 2, 4):
        clinic.session(KNEE, day=day, streams=(f"st-{day}",))
        vm, other = results(day)
        outcomes.extend(clinic.trial(_summary(clinic.last_session.session, f"st-{day}", vm, other)))
        outcomes.append(clinic.stream_completed(f"st-{day}", day=day))
        outcomes.append(clinic.symptoms(clinic.last_session.session, day=day + 1))
    return outcomes


def test_each_muscle_of_a_trial_summary_is_judged_on_its_own_and_cites_the_summary(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    # Biceps femoris fires late, but the criterion is vastus medialis's: only its result is judged.
    outcomes = _course(clinic, lambda day: ({"value": 6.0}, {"value": 300.0}))
    (advance,) = [d for o in outcomes for d in o.decisions if d.kind == "advance"]
    onset = [c for c in advance.criteria if c.criterion == "emg-onset-latency"]
    assert len(onset) == 3 and {c.status for c in onset} == {"pass"}
    assert {c.source for c in onset} == {f"Observation/trial-st-{d}-onset" for d in (0, 2, 4)}
    assert "Observation/trial-st-4-onset" in advance.evidence
    record = clinic.activity(KNEE).log[-1]
    assert {(m.muscle, m.observation) for m in record.metrics} == {
        ("vastus-medialis", "Observation/trial-st-4-onset"),
        ("biceps-femoris", "Observation/trial-st-4-onset"),
    }
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 1


def test_an_unmeasured_result_in_a_summary_never_advances_even_beside_a_measured_one(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    not_computable = {"value": None, "status": "not-computable", "reason": "the reference never fired"}
    # The other muscle is measured and within target; the criterion's own muscle is not: missing, not a pass.
    outcomes = _course(clinic, lambda day: (not_computable if day == 4 else {"value": 6.0}, {"value": 5.0}))
    assert not any(d.kind == "advance" for o in outcomes for d in o.decisions)
    (hold,) = [d for o in outcomes for d in o.decisions if d.kind == "hold"]
    [criterion] = [
        c for c in hold.criteria if c.criterion == "emg-onset-latency" and c.session == "Encounter/s3"
    ]
    assert criterion.status == "missing" and "the reference never fired" in (criterion.note or "")
    assert criterion.source == "Observation/trial-st-4-onset"
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_a_measured_value_without_a_number_is_not_evidence(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    outcomes = _course(clinic, lambda day: ({"value": None} if day == 2 else {"value": 6.0}, None))
    assert not any(d.kind == "advance" for o in outcomes for d in o.decisions)
    assert clinic.activity(KNEE).levels[Dimension.JOINTS] == 0


def test_not_detected_in_a_summary_is_a_measured_failure(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    failed = {"value": None, "status": "not-detected", "reason": "no onset above baseline mean + 3 SD"}
    outcomes = _course(clinic, lambda day: (failed if day == 4 else {"value": 6.0}, None))
    assert not any(d.kind == "advance" for o in outcomes for d in o.decisions)
    [record] = [r for r in clinic.activity(KNEE).log if r.session == "Encounter/s3"]
    assert [m.status for m in record.metrics] == ["not-detected"]


def test_a_re_delivered_trial_summary_changes_nothing(
    active: PlanState, make_clinic: Callable[..., Any]
) -> None:
    clinic = make_clinic(_only_emg_onset_required(active))
    clinic.session(KNEE, day=0, streams=("st-0",))
    summary = _summary(clinic.last_session.session, "st-0", {"value": 6.0}, {"value": 7.0})
    first = clinic.trial(summary)
    held = clinic.activity(KNEE).log[-1].metrics
    again = clinic.trial(summary)
    assert len(held) == 2 and clinic.activity(KNEE).log[-1].metrics == held
    assert all(o.decisions == () and not o.changed for o in again)
    assert all("already held" in " ".join(o.ignored) for o in again)
    assert len(first) == len(again) == 2
