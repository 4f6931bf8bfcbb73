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


def test_window_metrics_cover_amplitude_frequency_and_mvc_only() -> None:
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
    )

    by_code = {(m.code, m.channels): m for m in metrics}
    pct = by_code[(MetricCode.EMG_PERCENT_MVC, ("vastus-medialis-left",))]
    assert pct.unit == "%" and 0 < pct.value < 100
    assert all(m.start == start and (m.end - start).total_seconds() == pytest.approx(3.0) for m in metrics)
    assert (MetricCode.EMG_PERCENT_MVC, ("biceps-femoris-left",)) not in by_code
    # Onset latency and co-contraction need a reference and declared pairs: whole-trial measures only.
    assert {m.code for m in metrics} == {
        MetricCode.EMG_RMS,
        MetricCode.EMG_ENVELOPE_PEAK,
        MetricCode.EMG_MEDIAN_FREQUENCY,
        MetricCode.EMG_PERCENT_MVC,
    }


# -- onset timing: bias on a burst of known onset (docs/signals.md) ------------------------------------


def _known_onset(fs: float, amplitude: float, seed: int, onset_s: float = 1.0) -> np.ndarray:
    """White resting noise (RMS 1) and, from `onset_s`, a 20-250 Hz 'contraction' of RMS `amplitude`."""
    rng = np.random.default_rng(seed)
    n = round(2.0 * fs)
    activity = emg.bandpass(rng.normal(size=n), fs, 20.0, min(250.0, 0.45 * fs))
    activity *= amplitude / activity.std()
    return 0.01 * (rng.normal(size=n) + activity * (np.arange(n) / fs >= onset_s))


def _bias_ms(fs: float, amplitude: float, detect: Callable[[np.ndarray], list[emg.Activation]]) -> np.ndarray:
    found = [detect(_known_onset(fs, amplitude, seed)) for seed in range(20)]
    assert all(found), "every burst is found"
    return np.array([1000.0 * (f[0].onset - 1.0) for f in found])


@pytest.mark.parametrize("fs", [1000.0, 1111.0, 2148.0])
def test_onset_bias_on_a_burst_of_known_onset_is_under_5_ms(fs: float) -> None:
    # A burst at 10x the resting RMS (20 dB), 20 noise realisations.
    bias = _bias_ms(fs, 10.0, lambda x: emg.emg_onsets(x, fs))

    assert abs(bias.mean()) < 5.0, bias
    assert np.all((bias > -5.0) & (bias < 10.0)), bias  # and no single onset far off


def test_the_former_zero_lag_8_hz_envelope_put_onsets_tens_of_ms_early() -> None:
    fs = 1000.0
    old = emg.OnsetSettings(min_duration_s=0.05)

    bias = _bias_ms(fs, 10.0, lambda x: emg.detect_onsets(emg.linear_envelope(x, fs, 8.0), fs, old))

    # The filter run backwards spreads the burst's rise to before it begins.
    assert bias.mean() < -25.0


def test_a_burst_at_3x_the_resting_level_is_no_onset_but_5x_is() -> None:
    fs = 1000.0
    weak = [emg.emg_onsets(_known_onset(fs, 3.0, seed), fs) for seed in range(10)]
    clear = [emg.emg_onsets(_known_onset(fs, 5.0, seed), fs) for seed in range(10)]

    assert sum(bool(f) for f in weak) <= 1
    assert all(clear)


def test_the_onset_envelope_is_causal() -> None:
    fs = 1000.0
    x = _known_onset(fs, 30.0, seed=1)
    cut = round(1.2 * fs)

    # What happens after a sample never changes the envelope before it (no backward spreading).
    # (The means removed differ: a constant, which the band-pass started in its steady state rejects.)
    whole, head = emg.onset_envelope(x, fs), emg.onset_envelope(x[:cut], fs)
    assert np.allclose(whole[:cut], head, rtol=1e-9, atol=1e-12)
    assert whole[round(0.99 * fs)] < 2 * whole[:300].mean()  # still at rest just before the burst


def test_a_sustain_of_25_ms_is_needed() -> None:
    fs = 1000.0
    x = np.full(1000, 1.0)
    x[:300] += 0.01 * np.random.default_rng(0).normal(size=300)
    x[500:520] = 20.0  # 20 ms above threshold: noise, not an onset
    x[700:730] = 20.0  # 30 ms: an onset

    found = emg.detect_onsets(x, fs, emg.OnsetSettings(min_peak_ratio=1.0))

    assert [round(a.onset, 3) for a in found] == [0.7]


# -- co-contraction on %MVC envelopes over the active part ---------------------------------------------


def test_two_resting_channels_no_longer_read_as_near_total_co_contraction() -> None:
    fs = 1000.0
    rng = np.random.default_rng(5)
    a, b = 0.01 * rng.normal(size=3000), 0.01 * rng.normal(size=3000)
    env = emg.linear_envelope(np.column_stack([a, b]), fs)
    acts = [emg.emg_onsets(x, fs) for x in (a, b)]

    # On the whole raw envelopes equal noise floors look like ~95 % co-contraction ...
    assert emg.cocontraction(env[:, 0], env[:, 1]) > 90.0
    # ... but neither muscle is active: there is no active part to judge.
    assert acts == [[], []]
    with pytest.raises(ValueError, match="no active samples"):
        emg.cocontraction_mvc(env[:, 0], env[:, 1], 0.1, 0.1, emg.active_mask(3000, fs, *acts))


def test_co_contraction_on_mvc_envelopes_ignores_electrode_gain() -> None:
    fs = 1000.0
    agonist = _burst(fs, 3.0, (1.0, 2.5), seed=3)
    antagonist = 0.3 * _burst(fs, 3.0, (1.2, 2.0), seed=4)
    env = emg.linear_envelope(np.column_stack([agonist, antagonist]), fs)
    active = emg.active_mask(env.shape[0], fs, emg.emg_onsets(agonist, fs), emg.emg_onsets(antagonist, fs))

    same = emg.cocontraction_mvc(env[:, 0], env[:, 1], 0.4, 0.2, active)
    gained = emg.cocontraction_mvc(env[:, 0], 3.0 * env[:, 1], 0.4, 3.0 * 0.2, active)

    assert gained == pytest.approx(same, rel=1e-12)
    # The raw index moves with the gain (the 51 % -> 86 %); the %MVC one does not.
    raw, raw_gained = emg.cocontraction(env[:, 0], env[:, 1]), emg.cocontraction(env[:, 0], 3.0 * env[:, 1])
    assert raw_gained - raw > 20.0
    # Only the active part counts: 1.0-2.5 s here, not the rest before and after.
    assert active[1000:2500].all() and not active[:990].any() and not active[2600:].any()
