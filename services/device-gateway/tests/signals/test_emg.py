from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from relearn.device_gateway.signals import emg
from relearn.device_gateway.signals.frames import SensorFrame
from relearn.device_gateway.signals.metrics import MetricCode
from relearn.device_gateway.signals.windows import StreamAssembler

FramesFactory = Callable[..., list[SensorFrame]]


def _biosppy(path: Path) -> np.ndarray:
    return np.loadtxt(path, comments="#")


@pytest.fixture(scope="module")
def bmc(sensors: Path) -> np.ndarray:
    data = np.loadtxt(sensors / "emg" / "bmc_emg.csv", delimiter=",")
    assert np.allclose(np.diff(data[:, 0]), 0.001)
    return data[:, 1]


@pytest.fixture(scope="module")
def quiet_counts(sensors: Path) -> np.ndarray:
    return _biosppy(sensors / "emg" / "biosppy_emg.txt")


@pytest.fixture(scope="module")
def cycles_counts(sensors: Path) -> np.ndarray:
    return _biosppy(sensors / "emg" / "biosppy_emg_1.txt")


def _burst(fs: float, seconds: float, on: tuple[float, float], seed: int = 0) -> np.ndarray:
    """Resting noise with a band-limited 'contraction' between on[0] and on[1] seconds."""
    rng = np.random.default_rng(seed)
    n = round(seconds * fs)
    t = np.arange(n) / fs
    rest = 0.005 * rng.normal(size=n)
    activity = emg.bandpass(rng.normal(size=n), fs, 30.0, min(250.0, 0.45 * fs))
    mask = (t >= on[0]) & (t < on[1])
    return rest + 0.5 * activity * mask


# -- onsets on the reference recordings ------------------------------------------------------------


def test_bmc_contraction_onset_is_found_near_0_4_s(bmc: np.ndarray) -> None:
    # Tolerance 0.35-0.50 s: the raw signal visibly departs from rest at about 0.38-0.42 s.
    found = emg.emg_onsets(bmc, 1000.0)

    assert found, "no activation found"
    assert 0.35 <= found[0].onset <= 0.5
    assert found[0].duration > 0.3


def test_bmc_onset_with_teager_kaiser_conditioning(bmc: np.ndarray) -> None:
    found = emg.emg_onsets(bmc, 1000.0, tkeo=True)

    assert 0.35 <= found[0].onset <= 0.5
    # TKEO sharpens the rise: the onset is no earlier than the plain envelope's.
    assert found[0].onset >= emg.emg_onsets(bmc, 1000.0)[0].onset


def test_baseline_only_recording_has_no_onset(quiet_counts: np.ndarray) -> None:
    assert emg.emg_onsets(quiet_counts, 1000.0) == []
    assert emg.emg_onsets(quiet_counts, 1000.0, tkeo=True) == []
    assert emg.emg_onsets(quiet_counts, 1000.0, emg.OnsetSettings(baseline_s=(0.0, 2.0), h=2.0)) == []


def test_activation_cycles_give_several_onsets(cycles_counts: np.ndarray) -> None:
    found = emg.emg_onsets(cycles_counts, 1000.0, emg.OnsetSettings(baseline_s=(0.0, 1.0)))

    assert len(found) >= 3
    onsets = np.array([a.onset for a in found])
    assert np.all(np.diff(onsets) > 0.5)  # distinct cycles, not one burst chopped up
    assert all(a.offset > a.onset for a in found)


def test_median_frequency_on_activation_windows_is_physiological(cycles_counts: np.ndarray) -> None:
    found = emg.emg_onsets(cycles_counts, 1000.0, emg.OnsetSettings(baseline_s=(0.0, 1.0)))

    medians = [
        emg.median_frequency(cycles_counts[round(a.onset * 1000) : round(a.offset * 1000)], 1000.0)
        for a in found
    ]

    assert all(20.0 <= m <= 150.0 for m in medians), medians


def test_raw_counts_stream_gives_metrics_in_counts(
    quiet_counts: np.ndarray, frames_of: FramesFactory
) -> None:
    frames = frames_of(
        quiet_counts[:5000, None],
        rate=1000.0,
        channels=[{"name": "emg", "unit": "counts"}],
        adc={"resolution_bits": 12},
    )
    assembler = StreamAssembler(window_s=2.0, buffer_s=4.0)
    window = next(w for f in frames for w in assembler.push(f).windows)

    metrics = emg.emg_window_metrics(
        window.values, window.sampling_rate_hz, window.channels, window.units[0], window.start
    )

    units = {m.code: m.unit for m in metrics}
    assert units[MetricCode.EMG_RMS] == "{counts}"
    assert units[MetricCode.EMG_ENVELOPE_PEAK] == "{counts}"
    assert units[MetricCode.EMG_MEDIAN_FREQUENCY] == "Hz"
    rms = next(m.value for m in metrics if m.code is MetricCode.EMG_RMS)
    assert 0.5 < rms < 5.0  # a few counts of resting noise, not volts


# -- synthetic signals: arbitrary rates, definitions -----------------------------------------------


@pytest.mark.parametrize("fs", [1111.0, 963.0, 1481.0, 2148.0])
def test_arbitrary_rates_find_the_burst(fs: float) -> None:
    signal = _burst(fs, 3.0, (1.0, 2.0))

    found = emg.emg_onsets(signal, fs)

    assert len(found) == 1
    assert found[0].onset == pytest.approx(1.0, abs=0.01)
    # The causal filters ring briefly after a strong burst (100x rest): the offset comes a little late.
    assert 2.0 <= found[0].offset <= 2.08
    window = signal[round(1.1 * fs) : round(1.9 * fs)]
    assert 40.0 < emg.median_frequency(window, fs) < 150.0


def test_high_cut_is_clamped_below_nyquist_at_low_rates() -> None:
    assert emg.effective_band(1111.0) == (10.0, 450.0)
    low, high = emg.effective_band(500.0)
    assert low == 10.0 and high == pytest.approx(237.5)
    envelope = emg.linear_envelope(_burst(500.0, 3.0, (1.0, 2.0)), 500.0)
    assert envelope.shape == (1500,) and np.isfinite(envelope).all()
    with pytest.raises(ValueError, match="empty"):
        emg.effective_band(20.0)


def test_envelope_of_a_steady_sine_is_its_mean_rectified_amplitude() -> None:
    fs = 1111.0
    t = np.arange(round(4 * fs)) / fs
    x = 2.0 * np.sin(2 * np.pi * 100 * t) + 0.7  # DC offset removed by the pipeline

    envelope = emg.linear_envelope(x, fs)
    middle = envelope[round(fs) : round(3 * fs)]

    assert np.allclose(middle, 2.0 * 2 / np.pi, rtol=0.01)
    assert float(emg.rms(emg.conditioned(x, fs)[round(fs) : round(3 * fs)])) == pytest.approx(
        2 / np.sqrt(2), rel=0.01
    )
    assert np.allclose(emg.rms_envelope(x, fs)[round(fs) : round(3 * fs)], 2 / np.sqrt(2), rtol=0.01)


def test_multichannel_arrays_are_processed_per_column() -> None:
    fs = 1000.0
    a = _burst(fs, 2.0, (0.5, 1.5), seed=1)
    b = 3 * _burst(fs, 2.0, (0.5, 1.5), seed=2)

    both = emg.linear_envelope(np.column_stack([a, b]), fs)

    assert np.allclose(both[:, 0], emg.linear_envelope(a, fs))
    assert np.allclose(both[:, 1], emg.linear_envelope(b, fs))


def test_percent_mvc() -> None:
    assert emg.percent_mvc(np.array([0.1, 0.25, 0.5]), 0.5).tolist() == [20.0, 50.0, 100.0]
    with pytest.raises(ValueError):
        emg.percent_mvc(np.array([0.1]), 0.0)


def test_teager_kaiser_of_a_sine_is_constant() -> None:
    omega = 2 * np.pi * 50 / 1000
    x = 3.0 * np.sin(omega * np.arange(200))

    psi = emg.teager_kaiser(x)

    assert np.allclose(psi, 9.0 * np.sin(omega) ** 2)


def test_cocontraction_definitions() -> None:
    fs = 1000.0
    envelope = emg.linear_envelope(_burst(fs, 3.0, (1.0, 2.0)), fs)
    early = np.where(np.arange(3000) < 1500, 1.0, 0.0)

    assert emg.cocontraction(envelope, envelope) == pytest.approx(100.0)
    assert emg.cocontraction(early, 1.0 - early) == pytest.approx(0.0, abs=0.1)
    # A at 1, B at 0.5 all along: 200 * 0.5 / 1.5.
    assert emg.cocontraction(np.ones(100), np.full(100, 0.5)) == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="undefined"):
        emg.cocontraction(np.zeros(10), np.zeros(10))


def test_window_metrics_cover_mvc_onset_and_cocontraction() -> None:
    fs = 1111.0
    agonist = _burst(fs, 3.0, (1.0, 2.5), seed=3)
    antagonist = 0.2 * _burst(fs, 3.0, (1.0, 2.5), seed=4)
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

    metrics = emg.emg_window_metrics(
        np.column_stack([agonist, antagonist]),
        fs,
        ["vastus-medialis-left", "biceps-femoris-left"],
        "mV",
        start,
        mvc={"vastus-medialis-left": 0.4},
        onset=emg.OnsetSettings(baseline_s=(0.0, 0.5)),
        cocontraction_pairs=[("vastus-medialis-left", "biceps-femoris-left")],
    )

    by_code = {(m.code, m.channels): m for m in metrics}
    onset = by_code[(MetricCode.EMG_ONSET_LATENCY, ("vastus-medialis-left",))]
    assert onset.value == pytest.approx(1000.0, abs=60.0) and onset.unit == "ms"
    pct = by_code[(MetricCode.EMG_PERCENT_MVC, ("vastus-medialis-left",))]
    assert pct.unit == "%" and 0 < pct.value < 100
    cocon = by_code[(MetricCode.EMG_CO_CONTRACTION_INDEX, ("vastus-medialis-left", "biceps-femoris-left"))]
    assert 20.0 < cocon.value < 40.0  # antagonist at a fifth of the agonist: 200 * 0.2 / 1.2 = 33 %
    assert all(m.start == start and (m.end - start).total_seconds() == pytest.approx(3.0) for m in metrics)
    assert (MetricCode.EMG_PERCENT_MVC, ("biceps-femoris-left",)) not in by_code
