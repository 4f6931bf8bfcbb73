"""The metrics processor on real recordings fed as raw frame events (no broker).

Balance: subject 1's trials of the BDS data set must give the dataset authors' own values; EMG: the BMC
contraction onset near 0.4 s, nothing on the BioSPPy baseline recording, counts kept as counts.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from relearn.device_gateway.signals.frames import SensorFrame
from relearn.shared.events import CloudEvent
from relearn.shared.service import transaction

Grouped = dict[tuple[str, str | None], list[dict[str, Any]]]
Group = Callable[[list[CloudEvent]], Grouped]

TRIALS = {
    "BDS00001": ("open", "firm"),
    "BDS00004": ("closed", "firm"),
    "BDS00007": ("open", "foam"),
    "BDS00010": ("closed", "foam"),
}
SWAY = {
    "sway-path-length": "cm",
    "sway-mean-velocity": "cm/s",
    "sway-mean-distance": "cm",
    "sway-rms-distance": "cm",
    "sway-ellipse-area": "cm2",
    "sway-mean-frequency": "Hz",
    "sway-centroidal-frequency": "Hz",
    "sway-f50": "Hz",
    "sway-f95": "Hz",
}


@pytest.fixture(scope="module")
def reference(data: Any) -> dict[str, dict[str, str]]:
    with (data.sensors / "balance" / "reference-metrics-subject1.tsv").open() as f:
        return {row["Trial"]: row for row in csv.DictReader(f, delimiter="\t")}


def one(grouped: Grouped, metric: str, channel: str | None = None) -> dict[str, Any]:
    """The whole-recording value of a metric: the last one sent (a close sends its last window first)."""
    *windows, found = grouped[(metric, channel)]
    assert all(_seconds(w["window"]) <= 1.0 for w in windows), "one whole-recording value"
    return found


def _seconds(window: dict[str, str]) -> float:
    start, end = (datetime.fromisoformat(window[k]) for k in ("start", "end"))
    return (end - start).total_seconds()


# -- balance -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trial", list(TRIALS))
def test_balance_trial_fed_as_frames_gives_the_authors_values(
    trial: str, data: Any, feed: Any, group: Group, reference: dict[str, dict[str, str]]
) -> None:
    vision, surface = TRIALS[trial]
    stream = data.plate_stream(trial, protocol={"vision": vision, "surface": surface})

    during = feed.run(stream.frame_events())
    events = feed.run([stream.closed_event()])

    # Balance metrics are whole-trial only: nothing while the trial runs.
    assert during == []
    grouped = group(events)
    assert set(SWAY) <= {m for m, _ in grouped}
    ref = reference[trial]
    area = one(grouped, "sway-ellipse-area")
    velocity = one(grouped, "sway-mean-velocity")
    mfreq = one(grouped, "sway-mean-frequency")
    assert round(area["value"], 3) == round(float(ref["COParea"]), 3)
    assert round(velocity["value"], 3) == round(float(ref["COPvelo"]), 3)
    assert area["value"] == pytest.approx(float(ref["COParea"]), abs=1e-6)
    assert velocity["value"] == pytest.approx(float(ref["COPvelo"]), abs=1e-6)
    # The authors' spectral settings are not published: our mean power frequency agrees within 4e-4 Hz.
    assert abs(mfreq["value"] - float(ref["COPmfreq"])) < 5e-4
    for metric, unit in SWAY.items():
        m = one(grouped, metric)
        assert m["unit"] == unit and math.isfinite(m["value"])
        # The window is the whole 60 s trial, from the stream's origin.
        assert m["window"] == {"start": stream.origin, "end": "2026-03-02T09:31:00+00:00"}
        assert "channel" not in m
        assert (m["patient"], m["device"], m["stream"]) == (stream.patient, stream.device, stream.stream)
    *metrics, completed = events
    # One trial summary per metric, each naming the Observation it is stored as, one value, no window series.
    assert all(e.subject == stream.patient and e.type == "device.trial-summarized.v1" for e in metrics)
    assert len({e.data["observation"] for e in metrics}) == len(metrics) == len(SWAY)
    assert all(len(e.data["results"]) == 1 and "windows" not in e.data for e in metrics)
    # Then the close's summary: every whole-trial metric, measured.
    assert completed.type == "device.stream-metrics-completed.v1" and completed.subject == stream.patient
    assert completed.data["streamType"] == "force-plate" and completed.data["gaps"] == 0
    assert completed.data["metrics"] == [{"metric": m.data["metric"], "status": "measured"} for m in metrics]
    # One trial alone has no Romberg partner.
    assert ("romberg-quotient", None) not in grouped


def test_romberg_quotient_pairs_eyes_closed_with_eyes_open_on_the_same_surface(
    data: Any, feed: Any, group: Group, reference: dict[str, dict[str, str]]
) -> None:
    patient = "pat-romberg"
    firm_open = data.plate_stream("BDS00001", patient=patient, protocol={"vision": "open", "surface": "firm"})
    foam_closed = data.plate_stream(
        "BDS00010", patient=patient, protocol={"vision": "closed", "surface": "foam"}
    )
    firm_closed = data.plate_stream(
        "BDS00004", patient=patient, protocol={"vision": "closed", "surface": "firm"}
    )
    other = data.plate_stream("BDS00007", protocol={"vision": "open", "surface": "foam"})  # another patient

    first = group(feed.run(firm_open.events()))
    foam = group(feed.run(other.events() + foam_closed.events()))
    firm = group(feed.run(firm_closed.events()))

    assert ("romberg-quotient", None) not in first
    # The foam eyes-closed trial finds no eyes-open foam trial of this patient (the other one is not hers).
    assert ("romberg-quotient", None) not in foam
    quotient = one(firm, "romberg-quotient")
    ref = {t: float(reference[t]["COParea"]) for t in ("BDS00001", "BDS00004")}
    assert quotient["value"] == pytest.approx(ref["BDS00004"] / ref["BDS00001"], rel=1e-6)
    assert quotient["unit"] == "{ratio}" and quotient["stream"] == firm_closed.stream
    # This subject swayed over a smaller area with eyes closed: a quotient below 1 is data, not an error.
    assert quotient["value"] < 1
    components = {c["code"]: c for c in quotient["components"]}
    assert components["sway-ellipse-area"]["value"] == quotient["value"]
    velocity = {t: float(reference[t]["COPvelo"]) for t in ("BDS00001", "BDS00004")}
    assert components["sway-mean-velocity"]["value"] == pytest.approx(
        velocity["BDS00004"] / velocity["BDS00001"], rel=1e-6
    )
    assert set(components) == {
        "sway-ellipse-area",
        "sway-path-length",
        "sway-mean-velocity",
        "sway-mean-distance",
        "sway-rms-distance",
    }


def test_an_eyes_open_trial_closing_after_the_eyes_closed_one_still_gives_the_quotient(
    data: Any, feed: Any, group: Group, reference: dict[str, dict[str, str]]
) -> None:
    closed = data.plate_stream(
        "BDS00010", patient="pat-late", protocol={"vision": "closed", "surface": "foam"}
    )
    opened = data.plate_stream("BDS00007", patient="pat-late", protocol={"vision": "open", "surface": "foam"})

    feed.run(closed.events())
    quotient = one(group(feed.run(opened.events())), "romberg-quotient")

    ref = {t: float(reference[t]["COParea"]) for t in ("BDS00007", "BDS00010")}
    assert quotient["value"] == pytest.approx(ref["BDS00010"] / ref["BDS00007"], rel=1e-6)
    assert quotient["value"] > 1


# -- EMG -----------------------------------------------------------------------------------------------
def test_bmc_contraction_onset_near_0_4_s_and_window_metrics_in_microvolts(
    data: Any, feed: Any, group: Group
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=250
    )
    stream = data.stream("emg", frames, protocol={"cueTime": 0.0})  # the cue at the recording's start

    during = group(feed.run(stream.frame_events()))
    closing = group(feed.run([stream.closed_event()]))

    # 3.36 s of EMG: three complete 1 s windows, each with RMS, envelope peak and median frequency.
    windows = during[("emg-rms", "biceps")]
    assert [w["window"]["start"] for w in windows] == [
        "2026-03-02T09:30:00+00:00",
        "2026-03-02T09:30:01+00:00",
        "2026-03-02T09:30:02+00:00",
    ]
    assert all(w["unit"] == "uV" for w in windows)
    assert {m for m, _ in during} == {"emg-rms", "emg-envelope-peak", "emg-median-frequency"}
    # Volts reported in microvolts: the contraction's RMS is about 20 mV.
    assert all(15_000 < w["value"] < 30_000 for w in windows)
    for w in during[("emg-median-frequency", "biceps")]:
        assert 20.0 <= w["value"] <= 200.0 and w["unit"] == "Hz"

    onset = one(closing, "emg-onset-latency", "biceps")
    assert onset["unit"] == "ms" and 350.0 <= onset["value"] <= 500.0
    assert onset["status"] == "measured" and onset["reference"] == {
        "kind": "cue",
        "channel": None,
        "muscle": None,
    }
    assert onset["window"] == {"start": stream.origin, "end": "2026-03-02T09:30:03.360000+00:00"}
    peak = one(closing, "emg-envelope-peak", "biceps")
    samples = peak["samples"]
    assert samples["periodMs"] == 20.0 and samples["unit"] == "uV" and samples["dimensions"] == 1
    points = [int(v) for v in samples["data"].split()]
    assert len(points) == 168  # 3.36 s at 50 Hz
    # The waveform is the envelope every 20 ms: its highest point is just under the envelope's peak.
    assert 0.98 * peak["value"] <= max(points) * samples["factor"] <= 1.001 * peak["value"]
    assert one(closing, "emg-rms", "biceps")["unit"] == "uV"
    assert ("emg-percent-mvc", "biceps") not in closing  # no MVC given


def test_baseline_only_recording_in_counts_has_no_onset_and_stays_in_counts(
    data: Any, feed: Any, group: Group
) -> None:
    frames = data.wire_frames(
        data.biosppy()[:20_000],
        rate=1000.0,
        channels=[{"name": "emg", "unit": "counts"}],
        stream_type="emg",
        frame_len=1000,
        adc={"resolutionBits": 12},
    )
    stream = data.stream("emg", frames, protocol={"cueTime": 0.5})

    during = group(feed.run(stream.frame_events()))
    closing = group(feed.run([stream.closed_event()]))

    assert len(during[("emg-rms", "emg")]) == 19  # the 20th window closes with the stream
    assert {w["unit"] for w in during[("emg-rms", "emg")] + during[("emg-envelope-peak", "emg")]} == {
        "{counts}"
    }
    # No contraction after the cue: a measured "not detected", not a missing value.
    onset = one(closing, "emg-onset-latency", "emg")
    assert (onset["status"], onset["value"]) == ("not-detected", None) and "no onset" in onset["reason"]
    assert one(closing, "emg-rms", "emg")["unit"] == "{counts}"
    assert one(closing, "emg-envelope-peak", "emg")["samples"]["unit"] == "{counts}"


def test_onset_latency_is_measured_from_the_protocol_cue(data: Any, feed: Any, group: Group) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=500
    )
    at_start = data.stream("emg", [dict(f) for f in frames], protocol={"cueTime": 0.0})
    cued = data.stream("emg", [dict(f) for f in frames], protocol={"cueTime": 0.3})
    without = data.stream("emg", [dict(f) for f in frames])

    plain = one(group(feed.run(at_start.events())), "emg-onset-latency", "biceps")["value"]
    from_cue = one(group(feed.run(cued.events())), "emg-onset-latency", "biceps")["value"]
    no_clock = one(group(feed.run(without.events())), "emg-onset-latency", "biceps")

    assert from_cue == pytest.approx(plain - 300.0, abs=1.0)
    # Never from the recording start: without a cue or a reference channel there is no latency to give.
    assert (no_clock["status"], no_clock["value"]) == ("not-computable", None)
    assert "onsetReference" in no_clock["reason"] and "reference" not in no_clock


def test_onset_latency_against_a_reference_muscle_is_the_difference_of_their_onsets(
    data: Any, feed: Any, group: Group
) -> None:
    # The same real contraction on two channels, the second one firing 50 ms later (a late synergist).
    x = data.bmc()[:, :1]
    late = np.concatenate([np.repeat(x[:1], 50, axis=0), x[:-50]])
    values = np.hstack([x, late])
    channels = [{"name": "vastus-lateralis", "unit": "V"}, {"name": "vastus-medialis", "unit": "V"}]
    frames = data.wire_frames(values, rate=1000.0, channels=channels, stream_type="emg", frame_len=500)
    stream = data.stream("emg", frames, protocol={"onsetReference": "vastus-lateralis"})

    closing = group(feed.run(stream.events()))

    assert one(closing, "emg-onset-latency", "vastus-medialis")["value"] == pytest.approx(50.0, abs=5.0)
    assert ("emg-onset-latency", "vastus-lateralis") not in closing, "the reference has no latency to itself"


THIGH = {"RF": "rectus-femoris", "BF": "biceps-femoris", "VM": "vastus-medialis", "ST": "semitendinosus"}


def thigh_stream(data: Any, values: np.ndarray, **kw: Any) -> Any:
    """The UCI lower-limb recording (standing: RF stays at rest, ST fires at 0.43 s, BF 0.53 s, VM 1.18 s) as
    a four-channel EMG stream whose channels are bound to their muscles."""
    frames = data.wire_frames(
        values,
        rate=1000.0,
        channels=[{"name": n, "unit": "mV"} for n in THIGH],
        stream_type="emg",
        frame_len=500,
    )
    protocol = {"muscles": dict(THIGH), **kw.pop("protocol", {})}
    return data.stream("emg", frames, protocol=protocol, **kw)


def test_four_thigh_muscles_per_muscle_onsets_against_a_synergist_and_declared_pairs_only(
    data: Any, feed: Any, group: Group
) -> None:
    stream = thigh_stream(
        data,
        data.lower_limb()[:6000],
        protocol={
            "onsetReference": "ST",
            "pairs": [{"agonist": "VM", "antagonist": "ST"}, {"agonist": "RF", "antagonist": "BF"}],
        },
        mvc={"RF": 0.05, "VM": 0.05, "ST": 0.2},
    )

    during = group(feed.run(stream.frame_events()))
    events = feed.run([stream.closed_event()])
    closing = group(events)

    # One value per channel per window, each naming its muscle.
    for name, muscle in THIGH.items():
        assert len(during[("emg-rms", name)]) == 5
        assert {w["muscle"] for w in during[("emg-rms", name)]} == {muscle}
    assert len(during[("emg-percent-mvc", "RF")]) == 5
    assert ("emg-percent-mvc", "BF") not in during
    assert one(closing, "emg-percent-mvc", "VM")["value"] > 0

    # Onset latency per muscle, against the synergist's onset (ST), never averaged.
    synergist = {"kind": "synergist", "channel": "ST", "muscle": "semitendinosus"}
    bf, vm = one(closing, "emg-onset-latency", "BF"), one(closing, "emg-onset-latency", "VM")
    assert (bf["muscle"], bf["status"], bf["reference"]) == ("biceps-femoris", "measured", synergist)
    assert bf["value"] == pytest.approx(100.0, abs=30.0)  # 0.53 s - 0.43 s
    assert vm["value"] == pytest.approx(750.0, abs=40.0) and vm["muscle"] == "vastus-medialis"
    # RF never rises above its resting level: a measured failure with a reason, not silence.
    rf = one(closing, "emg-onset-latency", "RF")
    assert (rf["status"], rf["value"], rf["muscle"]) == ("not-detected", None, "rectus-femoris")
    assert "3 SD" in rf["reason"] and rf["reference"] == synergist
    assert ("emg-onset-latency", "ST") not in closing, "the reference has no latency to itself"

    # Co-contraction for the declared pairs only (not the 6 pairs of 4 channels), on %MVC envelopes.
    pairs = {
        c: one(closing, "emg-co-contraction-index", c) for m, c in closing if m == "emg-co-contraction-index"
    }
    assert set(pairs) == {"VM/ST", "RF/BF"}
    vm_st = pairs["VM/ST"]
    assert vm_st["status"] == "measured" and 0.0 < vm_st["value"] < 100.0 and vm_st["unit"] == "%"
    assert (vm_st["muscle"], vm_st["antagonist"]) == ("vastus-medialis", "semitendinosus")
    rf_bf = pairs["RF/BF"]
    assert (rf_bf["status"], rf_bf["value"]) == ("not-computable", None) and "no MVC for channel BF" in rf_bf[
        "reason"
    ]
    assert (rf_bf["muscle"], rf_bf["antagonist"]) == ("rectus-femoris", "biceps-femoris")

    # Last, the close's summary: each whole-recording metric with its status, after all of them.
    sent = [e for e in events if e.type != "test.window-recorded.v1"]  # the last window, recorded at close
    completed = sent[-1]
    assert completed.type == "device.stream-metrics-completed.v1"
    summaries = sent[:-1]
    assert [e.type for e in summaries] == ["device.trial-summarized.v1"] * len(summaries)
    # One summary per metric of the trial (not per channel, not per window): 6 codes for 4 muscles.
    assert sorted(e.data["metric"] for e in summaries) == sorted(
        [
            "emg-rms",
            "emg-envelope-peak",
            "emg-median-frequency",
            "emg-percent-mvc",
            "emg-onset-latency",
            "emg-co-contraction-index",
        ]
    )
    rms = next(e.data for e in summaries if e.data["metric"] == "emg-rms")
    assert [r["channel"] for r in rms["results"]] == list(THIGH)
    assert all(len(r["series"]["data"].split()) == 6 for r in rms["results"])  # six 1 s windows
    assert rms["windows"]["count"] == 6 and rms["windows"]["gapCount"] == 0
    listed = {(m["metric"], m.get("channel")): m for m in completed.data["metrics"]}
    assert listed[("emg-onset-latency", "RF")] == {
        "metric": "emg-onset-latency",
        "channel": "RF",
        "muscle": "rectus-femoris",
        "status": "not-detected",
    }
    assert listed[("emg-co-contraction-index", "RF/BF")]["status"] == "not-computable"
    assert listed[("emg-co-contraction-index", "VM/ST")]["muscle"] == "vastus-medialis"
    recording = {"start": "2026-03-02T09:30:00+00:00", "end": "2026-03-02T09:30:06+00:00"}
    whole = [
        {"metric": e.data["metric"]} | r
        for e in summaries
        for r in e.data["results"]
        if e.data["trial"] == recording
    ]
    assert len(listed) == len(completed.data["metrics"]) == len(whole)
    assert {k: v["status"] for k, v in listed.items()} == {
        (d["metric"], d["channel"]): d["status"] for d in whole
    }
    assert (completed.data["stream"], completed.data["streamType"], completed.data["gaps"]) == (
        stream.stream,
        "emg",
        0,
    )


def test_co_contraction_ignores_electrode_gain_when_the_mvc_was_recorded_with_it(
    data: Any, feed: Any, group: Group
) -> None:
    values = data.lower_limb()[:6000]
    louder = values.copy()
    louder[:, 1] *= 3.0  # BF's electrode at three times the gain, for the trial and for its MVC
    pairs = {"pairs": [{"agonist": "VM", "antagonist": "BF"}], "cueTime": 0.4}
    plain = thigh_stream(data, values, protocol=pairs, mvc={"VM": 0.05, "BF": 0.3})
    gained = thigh_stream(data, louder, protocol=pairs, mvc={"VM": 0.05, "BF": 0.9})

    before = group(feed.run(plain.events()))
    after = group(feed.run(gained.events()))

    value = one(before, "emg-co-contraction-index", "VM/BF")["value"]
    assert 0.0 < value < 100.0
    assert one(after, "emg-co-contraction-index", "VM/BF")["value"] == pytest.approx(value, rel=1e-9)
    # Onsets (threshold relative to each channel's own baseline) do not move either.
    for name in ("BF", "VM"):
        onset = one(after, "emg-onset-latency", name)
        assert onset["value"] == pytest.approx(one(before, "emg-onset-latency", name)["value"])
        assert onset["reference"]["kind"] == "cue"


def test_two_resting_muscles_give_no_co_contraction_and_a_silent_reference_no_latency(
    data: Any, feed: Any, group: Group
) -> None:
    # The first 1.1 s: RF and VM at rest throughout (BF and ST are already active).
    stream = thigh_stream(
        data,
        data.lower_limb()[:1100],
        protocol={"onsetReference": "RF", "pairs": [{"agonist": "VM", "antagonist": "RF"}]},
        mvc={"RF": 0.05, "VM": 0.05},
    )

    closing = group(feed.run(stream.events()))

    # Resting noise on both channels is not ~95 % co-contraction: there is nothing active to compare.
    cocon = one(closing, "emg-co-contraction-index", "VM/RF")
    assert (cocon["status"], cocon["value"]) == ("not-computable", None)
    assert "neither muscle was active" in cocon["reason"]
    # The reference (RF) never fired: BF's onset has nothing to be timed against; VM itself never fired.
    bf = one(closing, "emg-onset-latency", "BF")
    assert (bf["status"], bf["value"]) == ("not-computable", None) and "RF produced no onset" in bf["reason"]
    assert one(closing, "emg-onset-latency", "VM")["status"] == "not-detected"


def test_a_recording_too_short_reports_its_declared_metrics_as_not_computable(
    data: Any, feed: Any, group: Group
) -> None:
    stream = thigh_stream(
        data,
        data.lower_limb()[:200],
        protocol={"cueTime": 0.05, "pairs": [{"agonist": "VM", "antagonist": "BF"}]},
        mvc={"VM": 0.05, "BF": 0.3},
    )

    events = feed.run(stream.events())
    closing = group(events)

    assert {s for m, c in closing for s in [one(closing, m, c)["status"]]} == {"not-computable"}
    assert {c for m, c in closing if m == "emg-onset-latency"} == set(THIGH)
    assert one(closing, "emg-co-contraction-index", "VM/BF")["reason"].startswith("the recording has no")
    assert [m["status"] for m in events[-1].data["metrics"]] == ["not-computable"] * 5


def test_a_malformed_protocol_in_a_raw_event_does_not_fail_the_close(
    data: Any, feed: Any, group: Group
) -> None:
    # Bindings are validated by the gateway; a raw event from elsewhere with junk still gives its metrics.
    stream = thigh_stream(data, data.lower_limb()[:1000], protocol={"muscles": None, "pairs": "VM/BF"})

    events = feed.run(stream.events())

    assert one(group(events), "emg-rms", "VM")["status"] == "measured"
    assert "muscle" not in one(group(events), "emg-rms", "VM")
    assert not any(m == "emg-co-contraction-index" for m, _ in group(events))
    assert events[-1].type == "device.stream-metrics-completed.v1"


# -- state: restarts, mid-stream pick-up, bounds -------------------------------------------------------
def test_a_restarted_processor_rebuilds_the_recording_from_the_frames_table(
    data: Any, make_feed: Callable[..., Any], group: Group, reference: dict[str, dict[str, str]]
) -> None:
    stream = data.plate_stream("BDS00001")
    stored = [SensorFrame.model_validate(f) for f in stream.frames]
    asked: list[str] = []

    def load(_session: Any, stream_id: str) -> list[SensorFrame]:
        asked.append(stream_id)
        return stored

    first = make_feed(load_frames=load)
    first.run(stream.frame_events()[:30])
    restarted = make_feed(load_frames=load)  # the frames before the restart never reach this one
    restarted.run(stream.frame_events()[30:])
    events = group(restarted.run([stream.closed_event()]))

    assert asked == [stream.stream]
    area = one(events, "sway-ellipse-area")["value"]
    assert area == pytest.approx(float(reference["BDS00001"]["COParea"]), abs=1e-6)


def test_a_process_that_picks_a_stream_up_rebuilds_the_window_under_way_from_the_stored_frames(
    data: Any, make_feed: Callable[..., Any], group: Group, store: Callable[..., None]
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=300
    )
    reference = group(make_feed().run(data.stream("emg", [dict(f) for f in frames]).frame_events()))
    stream = data.stream("emg", frames)
    first = make_feed()
    store(first.engine, stream.frame_events())  # ingest stored every frame before its event
    before = group(first.run(stream.frame_events()[:5]))  # 1.5 s: window [0 s, 1 s) sent
    # A second process gets the stream from its 6th frame (1.5 s in), e.g. after a rebalance or a crash.
    after = group(make_feed().run(stream.frame_events()[5:]))

    # Window [1 s, 2 s) began before it joined: rebuilt from the frames table, same windows, same values,
    # none sent twice and none missing.
    sent = before[("emg-rms", "biceps")] + after[("emg-rms", "biceps")]
    assert [w["window"] for w in sent] == [w["window"] for w in reference[("emg-rms", "biceps")]]
    assert [w["value"] for w in sent] == pytest.approx([w["value"] for w in reference[("emg-rms", "biceps")]])
    assert all(w["status"] == "measured" for w in sent)


def test_without_stored_frames_a_window_begun_elsewhere_is_sent_as_a_gap_not_left_out(
    data: Any, make_feed: Callable[..., Any], group: Group
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=300
    )
    reference = group(make_feed().run(data.stream("emg", [dict(f) for f in frames]).frame_events()))
    stream = data.stream("emg", frames)
    late = group(make_feed().run(stream.frame_events()[5:]))  # nothing stored, nothing before 1.5 s

    gap, window = late[("emg-rms", "biceps")]
    assert gap["window"] == reference[("emg-rms", "biceps")][1]["window"]
    assert (gap["status"], gap["value"]) == ("not-computable", None) and "picked up inside" in gap["reason"]
    # [2 s, 3 s) is the same window, same value, wherever it is computed.
    assert window["window"] == reference[("emg-rms", "biceps")][2]["window"]
    assert window["value"] == pytest.approx(reference[("emg-rms", "biceps")][2]["value"])


def test_open_streams_are_capped_and_state_is_dropped_at_close(
    data: Any, make_feed: Callable[..., Any], group: Group
) -> None:
    streams = [data.plate_stream("BDS00001") for _ in range(3)]
    store = {s.stream: [SensorFrame.model_validate(f) for f in s.frames] for s in streams}
    feed = make_feed(max_streams=2, load_frames=lambda _s, sid: store[sid])

    # Interleaved frames of three streams with room for two.
    for batch in zip(*(s.frame_events() for s in streams), strict=True):
        feed.run(list(batch))
    assert feed.processor.open_streams == 2
    areas = [one(group(feed.run([s.closed_event()])), "sway-ellipse-area")["value"] for s in streams]

    assert feed.processor.open_streams == 0
    assert feed.processor.stats.evicted > 0 and feed.processor.stats.rebuilt >= 1
    assert areas[0] == pytest.approx(areas[1]) == pytest.approx(areas[2])


def test_a_rolled_back_frame_is_not_trusted(data: Any, feed: Any) -> None:
    stream = data.plate_stream("BDS00001")
    events = stream.frame_events()
    feed.run(events[:3])
    handlers = feed.processor.handlers()

    with pytest.raises(RuntimeError), transaction(feed.engine) as session:
        handlers[events[3].type](session, events[3])
        raise RuntimeError("the transaction fails after the handler ran")

    assert feed.processor.open_streams == 0  # forgotten: the close will rebuild from the frames table


def test_a_rolled_back_batch_that_closed_a_stream_is_replayed_event_by_event(
    data: Any, make_feed: Callable[..., Any], group: Group
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=250
    )
    twin = data.stream("emg", [dict(f) for f in frames])
    stream = data.stream("emg", frames)
    stored = [SensorFrame.model_validate(f) for f in frames]
    whole = group(make_feed(load_frames=lambda _s, _id: stored).run(twin.events()))
    feed = make_feed(load_frames=lambda _s, _id: stored)
    events = stream.events()
    feed.run(events[:2])  # 0.5 s committed
    handlers = feed.processor.handlers()

    # The consumer's batch: the rest of the stream and its close in one transaction, which rolls back.
    with pytest.raises(RuntimeError), transaction(feed.engine) as session:
        for e in events[2:]:
            handlers[e.type](session, e)
        raise RuntimeError("another event of the batch fails")
    assert feed.processor.open_streams == 0
    replayed = group(feed.run(events[2:]))  # then each event alone

    # The stream counts as open again: the window under way at 0.5 s is rebuilt from the stored frames, so
    # every window comes out, as in one pass, and the close's metrics are the same.
    def values(grouped: Grouped, metric: str) -> list[tuple[Any, ...]]:
        return [(d["window"]["start"], d["window"]["end"], d["value"]) for d in grouped[(metric, "biceps")]]

    assert values(replayed, "emg-rms") == values(whole, "emg-rms")
    assert len(values(whole, "emg-rms")) == 3 + 1 + 1  # three windows, the last 0.36 s, the recording
    ids = ("stream", "patient", "device", "observation")  # the twin: another binding
    assert {k: v for k, v in one(replayed, "emg-onset-latency", "biceps").items() if k not in ids} == {
        k: v for k, v in one(whole, "emg-onset-latency", "biceps").items() if k not in ids
    }
    assert feed.processor.open_streams == 0


# -- other stream kinds --------------------------------------------------------------------------------
def test_load_cell_board_and_cop_streams_give_the_same_trial_metrics(
    data: Any, feed: Any, group: Group, reference: dict[str, dict[str, str]]
) -> None:
    raw = np.loadtxt(data.sensors / "balance" / "BDS00001.txt", skiprows=1)
    fz, mx, my = raw[:, 3], raw[:, 4], raw[:, 5]
    x, y = -my / fz * 100.0, mx / fz * 100.0  # cm
    # The same trial on a Wii-sized four-cell board (43.3 x 23.8 cm), cells in N, no twist between diagonals.
    lx, ly = 43.3, 23.8
    sx, sy = 2 * x * fz / lx, 2 * y * fz / ly
    cells = np.column_stack([(fz - sx + sy) / 4, (fz + sx + sy) / 4, (fz - sx - sy) / 4, (fz + sx - sy) / 4])
    board = data.stream(
        "load-cells",
        data.wire_frames(
            cells,
            rate=100.0,
            channels=[{"name": n, "unit": "N"} for n in ("TL", "TR", "BL", "BR")],
            stream_type="load-cells",
            frame_len=64,
        ),
    )
    # The dataset's own COP columns, sent by a device that reports COP in mm.
    cop = data.stream(
        "cop",
        data.wire_frames(
            raw[:, 7:9] * 10.0,
            rate=100.0,
            channels=[{"name": "x", "unit": "mm"}, {"name": "y", "unit": "mm"}],
            stream_type="cop",
            frame_len=100,
        ),
    )

    for stream in (board, cop):
        grouped = group(feed.run(stream.events()))
        assert round(one(grouped, "sway-ellipse-area")["value"], 3) == round(
            float(reference["BDS00001"]["COParea"]), 3
        )
        assert round(one(grouped, "sway-mean-velocity")["value"], 3) == round(
            float(reference["BDS00001"]["COPvelo"]), 3
        )


def test_unevenly_sampled_armband_still_gives_window_and_recording_metrics(
    data: Any, feed: Any, group: Group
) -> None:
    raw = np.loadtxt(data.sensors / "emg" / "uci_gestures_s10_1_raw_data_11-08_21.03.16.txt", skiprows=1)
    raw = raw[:8000]
    times = (raw[:, 0] - raw[0, 0]) / 1000.0  # integer ms, irregular
    names = [f"ch{i}" for i in range(1, 9)]
    frames = []
    for seq, lo in enumerate(range(0, raw.shape[0], 400)):
        block = slice(lo, lo + 400)
        frames.append(
            {
                "deviceId": "?",
                "streamType": "emg",
                "streamId": "?",
                "sequence": seq,
                "startTime": (data.t0 + timedelta(seconds=float(times[lo]))).isoformat(),
                "samplingRateHz": 1000.0,
                "channels": [{"name": n, "unit": "V"} for n in names],
                "samples": raw[block, 1:9].tolist(),
                "timestamps": (times[block] - times[lo]).tolist(),
            }
        )
    stream = data.stream("emg", frames)

    during = group(feed.run(stream.frame_events()))
    closing = group(feed.run([stream.closed_event()]))

    assert len(during[("emg-rms", "ch1")]) >= 5
    assert {c for m, c in closing if m == "emg-rms"} == set(names)
    # Eight channels: an armband, not an agonist/antagonist set-up, so no co-contraction pairs.
    assert not any(m == "emg-co-contraction-index" for m, _ in closing)


def test_a_recording_longer_than_the_memory_bound_is_rebuilt_at_close(
    data: Any, make_feed: Callable[..., Any], group: Group, reference: dict[str, dict[str, str]]
) -> None:
    stream = data.plate_stream("BDS00004")
    stored = [SensorFrame.model_validate(f) for f in stream.frames]
    # 100 kB keeps about 18 s of a 6-channel 100 Hz trial in memory: the 60 s trial outgrows it.
    feed = make_feed(recording_bytes=100_000, load_frames=lambda _s, _id: stored)

    events = group(feed.run(stream.events()))

    assert feed.processor.stats.rebuilt == 1
    area = one(events, "sway-ellipse-area")["value"]
    assert area == pytest.approx(float(reference["BDS00004"]["COParea"]), abs=1e-6)


# -- the close covers the whole recording --------------------------------------------------------------
def _quiet_then_burst(seconds: float, rate: float, burst_s: float, seed: int = 3) -> np.ndarray:
    """Two channels (mV) of resting noise; from `burst_s` on, a contraction 20x the rest (the second channel
    100 ms later)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    out = rng.standard_normal((n, 2)) * 0.01
    out[t >= burst_s, 0] *= 20.0
    out[t >= burst_s + 0.1, 1] *= 20.0
    return out


def test_the_close_covers_the_whole_recording_past_five_minutes(
    data: Any, feed: Any, group: Group, store: Callable[..., None]
) -> None:
    # 400 s, the contraction at 350 s: past the 300 s the close used to stop at.
    values = _quiet_then_burst(400.0, 1000.0, 350.0)
    channels = [{"name": "VM", "unit": "mV"}, {"name": "VL", "unit": "mV"}]
    frames = data.wire_frames(values, rate=1000.0, channels=channels, stream_type="emg", frame_len=1000)
    stream = data.stream("emg", frames, protocol={"cueTime": 349.8})
    store(feed.engine, stream.frame_events())

    during = group(feed.run(stream.frame_events()))
    closing = group(feed.run([stream.closed_event()]))

    whole = {"start": "2026-03-02T09:30:00+00:00", "end": "2026-03-02T09:36:40+00:00"}
    rms = one(closing, "emg-rms", "VM")
    assert rms["window"] == whole and "partial" not in rms
    # The envelope waveform covers all 400 s (50 Hz).
    peak = one(closing, "emg-envelope-peak", "VM")
    assert len(peak["samples"]["data"].split()) == 400 * 50
    # The contraction at 350 s is found: 200 ms after the cue for VM, 300 ms for VL.
    onset = one(closing, "emg-onset-latency", "VM")
    assert onset["status"] == "measured" and onset["value"] == pytest.approx(200.0, abs=30.0)
    assert one(closing, "emg-onset-latency", "VL")["value"] == pytest.approx(300.0, abs=30.0)
    # And every 1 s window of the 400 is sent once (the last one, full, at the close).
    sent = during[("emg-rms", "VM")] + [w for w in closing[("emg-rms", "VM")] if w["window"] != whole]
    assert len(sent) == 400 and len({w["window"]["start"] for w in sent}) == 400


def test_a_recording_beyond_the_close_bound_says_which_span_its_metrics_cover(
    data: Any, make_feed: Callable[..., Any], group: Group, store: Callable[..., None]
) -> None:
    values = _quiet_then_burst(60.0, 1000.0, 30.0)
    channels = [{"name": "VM", "unit": "mV"}, {"name": "VL", "unit": "mV"}]
    frames = data.wire_frames(values, rate=1000.0, channels=channels, stream_type="emg", frame_len=1000)
    stream = data.stream("emg", frames)
    # 480 kB holds 20 s of 2 channels and their times (24 bytes a sample).
    feed = make_feed(close_bytes=480_000)
    store(feed.engine, stream.frame_events())

    closing = group(feed.run(stream.events()))

    rms = one(closing, "emg-rms", "VM")
    assert rms["partial"] is True
    assert rms["window"] == {"start": "2026-03-02T09:30:00+00:00", "end": "2026-03-02T09:30:20+00:00"}
    assert "covers the first 20.0 s of a 60.0 s recording" in rms["reason"]


def test_a_trial_summary_carries_the_window_series_with_its_gaps(
    data: Any, make_feed: Callable[..., Any]
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=300
    )
    stream = data.stream("emg", frames, protocol={"muscles": {"biceps": "biceps-brachii"}})
    feed = make_feed()
    feed.run(stream.frame_events()[5:])  # nothing stored, nothing before 1.5 s: windows 0 and 1 are gaps
    closing = feed.run([stream.closed_event()])
    summaries = {e.data["metric"]: e.data for e in closing if e.type == "device.trial-summarized.v1"}

    rms = summaries["emg-rms"]
    [result] = rms["results"]
    assert (result["channel"], result["muscle"], result["status"]) == ("biceps", "biceps-brachii", "measured")
    series = result["series"]
    assert (series["periodMs"], series["unit"], series["dimensions"]) == (1000.0, "uV", 1)
    data_points = series["data"].split()
    # Window 0 never came to this processor (no row: E), window 1 is a recorded gap (E), then values.
    assert data_points[:2] == ["E", "E"] and all(float(v) > 0 for v in data_points[2:])
    assert rms["windows"]["gapCount"] >= 1 and "picked up inside" in rms["windows"]["gaps"][0]["reason"]
    # Whole-recording metrics without a window counterpart carry no series.
    assert "series" not in summaries["emg-onset-latency"]["results"][0]


def test_a_close_delivered_again_summarises_the_trial_under_the_same_observations(
    data: Any, engine: Any, make_feed: Callable[..., Any], store: Callable[..., None]
) -> None:
    frames = data.wire_frames(
        data.bmc(), rate=1000.0, channels=[{"name": "biceps", "unit": "V"}], stream_type="emg", frame_len=300
    )
    stream = data.stream("emg", frames, protocol={"cueTime": 0.0})
    store(engine, stream.frame_events())
    make_feed().run(stream.frame_events())
    first = make_feed().run([stream.closed_event()])
    again = make_feed().run([stream.closed_event()])  # a restarted processor gets the close again

    def summaries(events: list[CloudEvent]) -> dict[str, dict[str, Any]]:
        return {e.data["metric"]: e.data for e in events if e.type == "device.trial-summarized.v1"}

    assert set(summaries(first)) == {
        "emg-rms",
        "emg-envelope-peak",
        "emg-median-frequency",
        "emg-onset-latency",
    }
    assert {m: d["observation"] for m, d in summaries(again).items()} == {
        m: d["observation"] for m, d in summaries(first).items()
    }
    # The windows were all recorded once: the series is the same, read back from metrics_window.
    assert summaries(again)["emg-rms"]["results"] == summaries(first)["emg-rms"]["results"]
