"""What the metrics processor computes from a window or a whole recording: pure functions, no I/O.

Each result is a `Computed`: one value of one evaluation-CodeSystem metric over one time window, for one
channel (EMG) or for the whole stream (balance), with optional components and a downsampled waveform. The
processor turns each into one `device.metric-computed.v1` event.

Units follow the CodeSystem where the signal allows it: EMG amplitudes declared in V or mV are reported in
uV; raw ADC counts without a declared transfer function stay `{counts}`; onset latency is in ms; COP metrics
are in cm, cm/s, cm2 and Hz.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from relearn.device_gateway.signals import balance, cop, emg
from relearn.device_gateway.signals.metrics import MetricCode
from relearn.device_gateway.signals.resample import resample_uniform
from relearn.device_gateway.signals.spectrum import spectral_fraction_frequency
from relearn.device_gateway.signals.windows import Recording, Window

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]

ENVELOPE_RATE_HZ = 50.0
"""Rate of the EMG envelope waveform attached to whole-recording metrics (the envelope is low-passed at 6 Hz,
so 50 Hz keeps its shape)."""
ENVELOPE_LEVELS = 10_000
"""The waveform's values are integers 0..ENVELOPE_LEVELS times `factor` (compact, 4 significant digits)."""
ROMBERG_BASES = (
    MetricCode.SWAY_ELLIPSE_AREA,
    MetricCode.SWAY_PATH_LENGTH,
    MetricCode.SWAY_MEAN_VELOCITY,
    MetricCode.SWAY_MEAN_DISTANCE,
    MetricCode.SWAY_RMS_DISTANCE,
)
"""The sway metrics a Romberg quotient is reported for; the first is the quotient's value, all are
components."""
MIN_EMG_SECONDS = 0.3
MIN_BALANCE_SECONDS = 5.0
"""Shorter trials give no balance metrics: the spectral measures need several seconds of sway."""

_TO_MICROVOLT = {"V": 1e6, "mV": 1e3, "uV": 1.0}
_TO_CM = {"cm": 1.0, "mm": 0.1, "m": 100.0}


@dataclass(frozen=True, slots=True)
class Component:
    code: str
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Samples:
    """A downsampled waveform (FHIR SampledData): value = origin + factor * datum."""

    period_ms: float
    factor: float
    unit: str
    data: str
    origin: float = 0.0
    dimensions: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "periodMs": self.period_ms,
            "origin": self.origin,
            "factor": self.factor,
            "dimensions": self.dimensions,
            "unit": self.unit,
            "data": self.data,
        }


MEASURED = "measured"
NOT_DETECTED = "not-detected"
NOT_COMPUTABLE = "not-computable"


@dataclass(frozen=True, slots=True)
class OnsetReference:
    """What an onset latency is timed against: a synergist channel's onset, or the movement cue."""

    kind: str  # "synergist" | "cue"
    channel: str | None = None
    muscle: str | None = None


@dataclass(frozen=True, slots=True)
class Computed:
    """One metric value over [start, end); `channel` None for whole-stream (balance) metrics.

    `status` is `measured` (value finite), `not-detected` (a measured failure, e.g. no onset: value None) or
    `not-computable` (the evidence does not exist, e.g. no reference or no MVC: value None), with `reason`.
    `muscle` / `antagonist` are the bound muscles (co-contraction: agonist and antagonist)."""

    metric: MetricCode
    value: float | None
    unit: str
    start: datetime
    end: datetime
    channel: str | None = None
    components: tuple[Component, ...] = field(default_factory=tuple)
    samples: Samples | None = None
    status: str = MEASURED
    reason: str | None = None
    muscle: str | None = None
    antagonist: str | None = None
    reference: OnsetReference | None = None
    # True when [start, end) is less than the metric's nominal span: the last window of a recording that
    # ends inside it, or whole-recording metrics over the part of a recording the close could hold.
    partial: bool = False


# -- helpers ---------------------------------------------------------------------------------------------
def _emg_scale(unit: str) -> tuple[float, str]:
    """(factor, unit) that reports an EMG amplitude in uV, or leaves counts as counts."""
    factor = _TO_MICROVOLT.get(unit)
    return (factor, "uV") if factor is not None else (1.0, unit)


def _is_uniform(times: FloatArray, rate: float) -> bool:
    if times.size < 2:
        return True
    period = 1.0 / rate
    # Frame start times carry microsecond rounding; a real irregularity is far larger.
    return bool(np.all(np.abs(np.diff(times) - period) <= 2e-6 + 0.01 * period))


@dataclass(frozen=True, slots=True)
class Uniform:
    """A stretch of samples on a uniform grid: `values[i]` at `t0 + i / rate` (seconds from the origin)."""

    t0: float
    rate: float
    values: FloatArray
    whole: bool  # False when gaps or unusable samples cut the recording and only its longest stretch is here

    @property
    def seconds(self) -> float:
        return int(self.values.shape[0]) / self.rate


def uniform_stretch(
    times: FloatArray, values: FloatArray, rate: float, *, valid: NDArray[np.bool_] | None = None
) -> Uniform | None:
    """The longest stretch of valid samples on the nominal grid.

    Evenly sampled data is used as it is (exact reference values); uneven data (real timestamps, or a
    missing frame) is resampled at the nominal rate, never across a hole longer than five periods. Samples
    with `valid` False (e.g. nobody on the plate) split the recording too.
    """
    if times.size == 0:
        return None
    ok = np.ones(times.size, dtype=bool) if valid is None else valid
    if _is_uniform(times, rate):
        grid_t, grid_v, grid_ok = times, values, ok
    else:
        max_gap = 5.0 / rate
        both = np.column_stack([values, ok.astype(np.float64)])
        r = resample_uniform(times, both, rate, max_gap_s=max_gap)
        grid_t, grid_v = r.times, r.values[:, :-1]
        # A grid point is usable when it lies between two usable real samples.
        grid_ok = r.valid & (r.values[:, -1] >= 1.0 - 1e-9)
    edges = np.diff(np.concatenate(([0], grid_ok.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if starts.size == 0:
        return None
    k = int(np.argmax(ends - starts))
    lo, hi = int(starts[k]), int(ends[k])
    whole = lo == 0 and hi == grid_t.size and grid_t is times
    return Uniform(float(grid_t[lo]), rate, np.asarray(grid_v[lo:hi], dtype=np.float64), whole)


def envelope_samples(envelope: FloatArray, fs: float, unit: str) -> Samples:
    """The envelope decimated to about `ENVELOPE_RATE_HZ` as integers with a scale factor."""
    step = max(1, round(fs / ENVELOPE_RATE_HZ))
    points = np.clip(envelope[::step], 0.0, None)
    peak = float(points.max()) if points.size else 0.0
    factor = peak / ENVELOPE_LEVELS if peak > 0 else 1.0
    data = " ".join(str(int(v)) for v in np.rint(points / factor).astype(np.int64))
    return Samples(period_ms=1000.0 * step / fs, factor=float(f"{factor:.6g}"), unit=unit, data=data)


def _finite(items: list[Computed]) -> list[Computed]:
    # Value-less results (not detected / not computable) are findings, kept; a NaN measurement is not.
    out = [c for c in items if c.value is None or math.isfinite(c.value)]
    if len(out) != len(items):
        logger.warning("non-finite metric values dropped", extra={"dropped": len(items) - len(out)})
    return out


# -- EMG -------------------------------------------------------------------------------------------------
WINDOW_METRICS = (MetricCode.EMG_RMS, MetricCode.EMG_ENVELOPE_PEAK, MetricCode.EMG_MEDIAN_FREQUENCY)
"""What every EMG window gives per channel (and emg-percent-mvc for a channel with an MVC)."""
MIN_PARTIAL_WINDOW_S = 0.25
"""The last window of a recording is computed when it holds at least this much signal (the Welch segment)."""


def emg_window(window: Window, mvc: Mapping[str, float] | None) -> list[Computed]:
    """Per-channel metrics of one complete 1 s window: RMS, envelope peak, median frequency, %MVC."""
    if not window.complete:
        return []
    if not _is_uniform(window.times, window.sampling_rate_hz):
        stretch = uniform_stretch(window.times, window.values, window.sampling_rate_hz)
        span = (window.end - window.start).total_seconds()
        if stretch is None or (not stretch.whole and stretch.seconds < 0.9 * span):
            return []
        values = stretch.values
    else:
        values = window.values
    if values.shape[0] < 16:
        return []
    out: list[Computed] = []
    for unit in dict.fromkeys(window.units):
        cols = [i for i, u in enumerate(window.units) if u == unit]
        names = [window.channels[i] for i in cols]
        scale, out_unit = _emg_scale(unit)
        metrics = emg.emg_window_metrics(
            values[:, cols], window.sampling_rate_hz, names, unit, window.start, mvc=_mvc_for(mvc, names)
        )
        for m in metrics:
            amplitude = m.code in (MetricCode.EMG_RMS, MetricCode.EMG_ENVELOPE_PEAK)
            out.append(
                Computed(
                    m.code,
                    m.value * scale if amplitude else m.value,
                    out_unit if amplitude else m.unit,
                    window.start,
                    window.end,
                    m.channels[0],
                )
            )
    return _finite(out)


def emg_last_window(window: Window, window_s: float, mvc: Mapping[str, float] | None) -> list[Computed]:
    """The last window of a recording (cut at the end, `complete` False only because nothing follows it).

    A window whose samples fill it is an ordinary window. One the recording ends inside is computed over its
    real span [start, last sample + 1 period), flagged `partial`, when it holds at least
    `MIN_PARTIAL_WINDOW_S`; a shorter one is reported not computable, with its span and why."""
    rate = window.sampling_rate_hz
    n = int(window.times.shape[0])
    if n == 0:
        return []
    touched = window.reason is not None and window.reason != "the recording ends inside this window"
    if n >= round(window_s * rate) and not touched:
        full = _replace_window(window, complete=True, end=window.end)
        return emg_window(full, mvc)
    end = window.start + timedelta(seconds=float(window.times[-1]) + 1.0 / rate)
    seconds = (end - window.start).total_seconds()
    if touched:
        return emg_window_gap(window, mvc, window.reason or "", end=end)
    if seconds < MIN_PARTIAL_WINDOW_S:
        why = (
            f"the recording ends {seconds:.3f} s into this window: under {MIN_PARTIAL_WINDOW_S} s of signal, "
            "too short for window metrics"
        )
        return emg_window_gap(window, mvc, why, end=end)
    part = _replace_window(window, complete=True, end=end)
    out = emg_window(part, mvc)
    if not out:
        return emg_window_gap(window, mvc, "the last window's samples are not evenly sampled", end=end)
    why = f"the recording ends inside this window: its metrics cover {seconds:.3f} s of {window_s:g} s"
    return [partial(c, why) for c in out]


def partial(c: Computed, reason: str) -> Computed:
    """The metric flagged as covering only part of its window, with why."""
    return replace(c, reason=reason, partial=True)


def _replace_window(window: Window, *, complete: bool, end: datetime) -> Window:
    return Window(
        window.stream,
        window.index,
        window.start,
        end,
        window.times,
        window.values,
        window.channels,
        window.units,
        window.sampling_rate_hz,
        complete,
        None if complete else window.reason,
    )


def emg_window_gap(
    window: Window, mvc: Mapping[str, float] | None, reason: str, *, end: datetime | None = None
) -> list[Computed]:
    """A window whose metrics cannot be computed: every metric it would have given, per channel, reported
    `not-computable` with the reason (an Observation with a dataAbsentReason, never a silent hole)."""
    return window_gap(window.start, end or window.end, window.channels, window.units, mvc, reason)


def window_gap(
    start: datetime,
    end: datetime,
    channels: Sequence[str],
    units: Sequence[str],
    mvc: Mapping[str, float] | None,
    reason: str,
) -> list[Computed]:
    """`emg_window_gap` from the window's span and the stream's channel layout."""
    with_mvc = _mvc_for(mvc, channels) or {}
    out = []
    for name, unit in zip(channels, units, strict=True):
        amplitude_unit = _emg_scale(unit)[1]
        for code in WINDOW_METRICS:
            metric_unit = "Hz" if code is MetricCode.EMG_MEDIAN_FREQUENCY else amplitude_unit
            out.append(
                Computed(code, None, metric_unit, start, end, name, status=NOT_COMPUTABLE, reason=reason)
            )
        if name in with_mvc:
            out.append(
                Computed(
                    MetricCode.EMG_PERCENT_MVC,
                    None,
                    "%",
                    start,
                    end,
                    name,
                    status=NOT_COMPUTABLE,
                    reason=reason,
                )
            )
    return out


def _mvc_for(mvc: Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float] | None:
    if not mvc:
        return None
    return {n: float(mvc[n]) for n in names if n in mvc and float(mvc[n]) > 0}


@dataclass(frozen=True, slots=True)
class EmgProtocol:
    """What the binding's protocol says about an EMG recording (docs/api.md, "Streams").

    `cue_s`: seconds after the stream origin when the movement cue was given; `reference`: the channel onset
    latencies are timed against (a synergist: each other channel's onset minus the reference's, e.g. vastus
    medialis against vastus lateralis, negative when it fired first); it takes precedence over the cue.
    Without either there is no latency to report (never from the recording start: it would only measure the
    baseline). `muscles`: channel -> SENIAM muscle slug. `pairs`: the declared (agonist, antagonist) channel
    pairs, the only ones co-contraction is computed for."""

    cue_s: float | None = None
    reference: str | None = None
    muscles: Mapping[str, str] = field(default_factory=dict)
    pairs: tuple[tuple[str, str], ...] = ()


NO_ONSET = "no onset: the envelope never stayed above baseline mean + 3 SD for 25 ms with a peak of 5x rest"
NO_CLOCK = "the protocol gives neither onsetReference nor cueTime: an onset latency has nothing to refer to"


def emg_recording(
    recording: Recording, mvc: Mapping[str, float] | None, protocol: EmgProtocol
) -> list[Computed]:
    """Whole-recording EMG metrics per channel, co-contraction per declared pair, the envelope as a waveform.

    Onset latency is reported for every channel but the reference (measured, not-detected or
    not-computable); co-contraction for every declared pair (measured or not-computable)."""
    stretch = uniform_stretch(recording.times, recording.values, recording.sampling_rate_hz)
    if stretch is None or stretch.seconds < MIN_EMG_SECONDS:
        return _too_short(recording, protocol)
    if not stretch.whole:
        logger.warning(
            "EMG recording has gaps: whole-recording metrics use its longest stretch",
            extra={"stretch_s": round(stretch.seconds, 3), "start_s": round(stretch.t0, 3)},
        )
    fs = stretch.rate
    x = stretch.values
    start = recording.origin + timedelta(seconds=stretch.t0)
    end = start + timedelta(seconds=stretch.seconds)
    cue = protocol.cue_s
    # Onsets are searched after a quiet baseline: the 0.5 s before the cue, or the first 0.3 s.
    cue_in = None if cue is None else cue - stretch.t0
    if cue_in is not None and 0.2 <= cue_in <= stretch.seconds:
        baseline = (max(0.0, cue_in - 0.5), cue_in)
    else:
        baseline = (0.0, min(0.3, stretch.seconds / 2))
    settings = emg.OnsetSettings(baseline_s=baseline)
    mvc_ok = _mvc_for(mvc, recording.channels) or {}
    muscles = protocol.muscles
    out: list[Computed] = []
    activations: dict[str, list[emg.Activation]] = {}
    onsets: dict[str, float | None] = {}
    # One channel at a time: the filters' working arrays are one column long, not the whole recording's
    # width (a 10-minute 8-channel 2 kHz recording is 82 MB; its filtered copies would be several times that).
    # Only the envelopes of channels in declared pairs are kept, for co-contraction.
    paired = {c for pair in protocol.pairs for c in pair}
    envelopes: dict[str, FloatArray] = {}
    for i, name in enumerate(recording.channels):
        column = np.ascontiguousarray(x[:, i])
        cond = emg.conditioned(column, fs)
        env = np.clip(emg.lowpass(emg.rectify(cond), fs, emg.DEFAULT_ENVELOPE_CUTOFF_HZ), 0.0, None)
        rms = float(np.atleast_1d(emg.rms(cond))[0])
        f, p = emg.welch_psd(cond, fs)
        mdf = float(np.atleast_1d(spectral_fraction_frequency(f, p, 0.5))[0])
        del cond, f, p
        timing = emg.onset_envelope(column, fs)
        del column
        scale, unit = _emg_scale(recording.units[i])
        muscle = muscles.get(name)
        out.append(Computed(MetricCode.EMG_RMS, rms * scale, unit, start, end, name, muscle=muscle))
        out.append(
            Computed(
                MetricCode.EMG_ENVELOPE_PEAK,
                float(env.max()) * scale,
                unit,
                start,
                end,
                name,
                samples=envelope_samples(env * scale, fs, unit),
                muscle=muscle,
            )
        )
        out.append(Computed(MetricCode.EMG_MEDIAN_FREQUENCY, mdf, "Hz", start, end, name, muscle=muscle))
        if name in mvc_ok:
            pct = float(emg.percent_mvc(env.mean(), mvc_ok[name]))
            out.append(Computed(MetricCode.EMG_PERCENT_MVC, pct, "%", start, end, name, muscle=muscle))
        found = emg.detect_onsets(timing, fs, settings, amplitude=env)
        del timing
        activations[name] = found
        after = [a for a in found if a.onset >= baseline[1] - 1e-9]
        onsets[name] = after[0].onset if after else None
        if name in paired:
            envelopes[name] = env
    span = (start, end)
    out.extend(_onset_latencies(recording.channels, onsets, cue_in, stretch.seconds, protocol, span))
    out.extend(_cocontractions(envelopes, activations, fs, mvc_ok, protocol, span))
    return _finite(out)


def _onset_latencies(
    channels: Sequence[str],
    onsets: Mapping[str, float | None],
    cue_in: float | None,
    seconds: float,
    protocol: EmgProtocol,
    span: tuple[datetime, datetime],
) -> list[Computed]:
    """One onset latency per channel (but the reference), relative to what the protocol supplies."""
    muscles, ref = protocol.muscles, protocol.reference

    def item(
        name: str,
        reference: OnsetReference | None,
        value: float | None = None,
        status: str = MEASURED,
        reason: str | None = None,
    ) -> Computed:
        return Computed(
            MetricCode.EMG_ONSET_LATENCY,
            value,
            "ms",
            *span,
            name,
            status=status,
            reason=reason,
            muscle=muscles.get(name),
            reference=reference,
        )

    if ref is not None:
        reference = OnsetReference("synergist", ref, muscles.get(ref))
        named = [n for n in channels if n != ref]
        if ref not in onsets:
            why = f"the reference channel {ref} is not in the recording"
            return [item(n, reference, status=NOT_COMPUTABLE, reason=why) for n in named]
        origin = onsets[ref]
        out = []
        for n in named:
            onset = onsets[n]
            if onset is None:
                out.append(item(n, reference, status=NOT_DETECTED, reason=NO_ONSET))
            elif origin is None:
                why = f"the reference channel {ref} produced no onset to time against"
                out.append(item(n, reference, status=NOT_COMPUTABLE, reason=why))
            else:
                out.append(item(n, reference, 1000.0 * (onset - origin)))
        return out
    if cue_in is not None:
        reference = OnsetReference("cue")
        if not 0.0 <= cue_in <= seconds:
            why = "the cue falls outside the usable recording (before it, after it, or in a gap)"
            return [item(n, reference, status=NOT_COMPUTABLE, reason=why) for n in channels]
        out = []
        for n in channels:
            onset = onsets[n]
            if onset is None:
                out.append(item(n, reference, status=NOT_DETECTED, reason=NO_ONSET))
            else:
                out.append(item(n, reference, 1000.0 * (onset - cue_in)))
        return out
    return [item(n, None, status=NOT_COMPUTABLE, reason=NO_CLOCK) for n in channels]


def _cocontractions(
    envelopes: Mapping[str, FloatArray],
    activations: Mapping[str, Sequence[emg.Activation]],
    fs: float,
    mvc: Mapping[str, float],
    protocol: EmgProtocol,
    span: tuple[datetime, datetime],
) -> list[Computed]:
    """Winter's %COCON for each declared pair, on %MVC envelopes over the active part of the trial."""
    out = []
    for a, b in protocol.pairs:
        value: float | None = None
        status, reason = MEASURED, None
        absent = [c for c in (a, b) if c not in envelopes]
        no_mvc = [c for c in (a, b) if c not in mvc]
        if absent:
            status, reason = NOT_COMPUTABLE, f"channel {', '.join(absent)} is not in the recording"
        elif no_mvc:
            status, reason = NOT_COMPUTABLE, f"no MVC for channel {', '.join(no_mvc)}: %MVC cannot be formed"
        else:
            active = emg.active_mask(envelopes[a].shape[0], fs, activations[a], activations[b])
            try:
                value = emg.cocontraction_mvc(envelopes[a], envelopes[b], mvc[a], mvc[b], active)
            except ValueError:
                status = NOT_COMPUTABLE
                reason = (
                    "neither muscle was active (no envelope above its onset threshold): nothing to compare"
                )
        out.append(
            Computed(
                MetricCode.EMG_CO_CONTRACTION_INDEX,
                value,
                "%",
                *span,
                f"{a}/{b}",
                status=status,
                reason=reason,
                muscle=protocol.muscles.get(a),
                antagonist=protocol.muscles.get(b),
            )
        )
    return out


def _too_short(recording: Recording, protocol: EmgProtocol) -> list[Computed]:
    """A recording too short (or too broken) for whole-recording metrics: the onset latencies and declared
    co-contractions it was meant to give are reported as not computable, not left out."""
    if recording.times.size == 0:
        return []
    start = recording.origin + timedelta(seconds=float(recording.times[0]))
    end = recording.origin + timedelta(seconds=float(recording.times[-1]) + 1.0 / recording.sampling_rate_hz)
    why = f"the recording has no uninterrupted stretch of {MIN_EMG_SECONDS} s"
    muscles = protocol.muscles
    reference: OnsetReference | None = None
    if protocol.reference is not None:
        reference = OnsetReference("synergist", protocol.reference, muscles.get(protocol.reference))
    elif protocol.cue_s is not None:
        reference = OnsetReference("cue")
    out = [
        Computed(
            MetricCode.EMG_ONSET_LATENCY,
            None,
            "ms",
            start,
            end,
            n,
            status=NOT_COMPUTABLE,
            reason=why,
            muscle=muscles.get(n),
            reference=reference,
        )
        for n in recording.channels
        if n != protocol.reference
    ]
    out.extend(
        Computed(
            MetricCode.EMG_CO_CONTRACTION_INDEX,
            None,
            "%",
            start,
            end,
            f"{a}/{b}",
            status=NOT_COMPUTABLE,
            reason=why,
            muscle=muscles.get(a),
            antagonist=muscles.get(b),
        )
        for a, b in protocol.pairs
    )
    return out


# -- balance ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BoardGeometry:
    """Sensor spacing (cm) of a four-load-cell board; the Wii Balance Board unless the protocol says."""

    lx: float = cop.WII_BALANCE_BOARD_CM[0]
    ly: float = cop.WII_BALANCE_BOARD_CM[1]


def cop_of(
    recording: Recording, stream_type: str, board: BoardGeometry | None = None
) -> tuple[FloatArray, FloatArray]:
    """COP (x, y) in cm of a force-plate, load-cell or COP recording; NaN where unloaded."""
    col = {name: recording.values[:, i] for i, name in enumerate(recording.channels)}
    unit = dict(zip(recording.channels, recording.units, strict=True))
    if stream_type == "force-plate":
        return cop.cop_from_force_plate(col["Fz"], col["Mx"], col["My"])
    if stream_type == "load-cells":
        g = board or BoardGeometry()
        min_load = 1.0 if unit["TL"] == "kg" else cop.MIN_LOAD_N
        return cop.cop_from_load_cells(
            col["TL"], col["TR"], col["BL"], col["BR"], lx=g.lx, ly=g.ly, min_load=min_load
        )
    if stream_type == "cop":
        scale = _TO_CM[unit["x"]]
        return col["x"] * scale, col["y"] * scale
    raise ValueError(f"no centre of pressure for {stream_type} streams")


@dataclass(frozen=True, slots=True)
class Trial:
    """Whole-trial balance metrics, kept for the Romberg quotient."""

    start: datetime
    end: datetime
    values: dict[str, float]


def balance_recording(
    recording: Recording, stream_type: str, board: BoardGeometry | None = None
) -> tuple[list[Computed], Trial | None]:
    """The whole-trial COP metrics (window = the trial), and the values the Romberg quotient needs."""
    x, y = cop_of(recording, stream_type, board)
    loaded = np.isfinite(x) & np.isfinite(y)
    stretch = uniform_stretch(
        recording.times,
        np.column_stack([np.nan_to_num(x), np.nan_to_num(y)]),
        recording.sampling_rate_hz,
        valid=loaded,
    )
    if stretch is None or stretch.seconds < MIN_BALANCE_SECONDS:
        logger.warning("balance trial too short or unloaded: no metrics")
        return [], None
    if not stretch.whole:
        logger.warning(
            "balance trial has gaps or unloaded samples: metrics use its longest stretch",
            extra={"stretch_s": round(stretch.seconds, 3), "start_s": round(stretch.t0, 3)},
        )
    start = recording.origin + timedelta(seconds=stretch.t0)
    metrics = balance.balance_metrics(stretch.values[:, 0], stretch.values[:, 1], stretch.rate, start)
    out = _finite([Computed(m.code, m.value, m.unit, m.start, m.end) for m in metrics])
    if not out:
        return [], None
    trial = Trial(out[0].start, out[0].end, {c.metric.value: c.value for c in out if c.value is not None})
    return out, trial


def romberg(closed: Trial, opened: Trial) -> Computed | None:
    """Eyes-closed / eyes-open for each sway metric in `ROMBERG_BASES` (value: the ellipse-area quotient)."""
    components: list[Component] = []
    for code in ROMBERG_BASES:
        c, o = closed.values.get(code.value), opened.values.get(code.value)
        if c is None or o is None or o == 0 or not (math.isfinite(c) and math.isfinite(o)):
            continue
        components.append(Component(code.value, balance.romberg_quotient(c, o), "{ratio}"))
    if not components or components[0].code != ROMBERG_BASES[0].value:
        return None
    return Computed(
        MetricCode.ROMBERG_QUOTIENT,
        components[0].value,
        "{ratio}",
        min(closed.start, opened.start),
        max(closed.end, opened.end),
        components=tuple(components),
    )


# -- trial summaries -------------------------------------------------------------------------------------
# A trial is one stream binding's recording, from its first frame (the origin) to its close. Its metrics reach
# the FHIR surface as one summary per metric code: every channel's (or pair's) whole-trial value, and for the
# metrics every 1 s window gives, the window series as FHIR SampledData (datum i = window [origin + i s,
# origin + (i + 1) s); "E" where the window could not be computed: a gap). The window rows themselves stay
# in the gateway (``metrics_window``, ``GET /streams/{id}/windows``).

WINDOW_PERIOD_MS = 1000.0
MAX_SERIES_WINDOWS = 7200
"""A window series holds at most this many windows (2 hours of 1 s windows); a longer trial's series is cut
there and says so (the window rows stay complete over the gateway's API)."""
MAX_GAP_NOTES = 10
_CODES = frozenset(m.value for m in MetricCode)


@dataclass(frozen=True, slots=True)
class StoredWindow:
    """One window row of a stream as the processor recorded it: its status and its metrics' values by
    (metric code, channel)."""

    index: int
    start: datetime
    end: datetime
    status: str  # measured | partial | gap
    reason: str | None
    values: Mapping[tuple[str, str], float | None]
    units: Mapping[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, index: int, start: datetime, end: datetime, status: str, reason: str | None, rows: Any
    ) -> StoredWindow:
        """From a window row's ``metrics`` JSON (:func:`window_values`); anything malformed is left out."""
        values: dict[tuple[str, str], float | None] = {}
        units: dict[tuple[str, str], str] = {}
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or not isinstance(row.get("channel"), str):
                continue
            key = (str(row.get("metric")), row["channel"])
            value = row.get("value")
            values[key] = float(value) if isinstance(value, int | float) else None
            units[key] = str(row.get("unit") or "1")
        return cls(index, start, end, status, reason, values, units)


@dataclass(frozen=True, slots=True)
class ChannelResult:
    """One channel's (or pair's, or the whole stream's) part of a trial summary."""

    result: Computed
    series: Samples | None = None


@dataclass(frozen=True, slots=True)
class TrialSummary:
    """One metric of one trial: the whole-trial result per channel, with the window series."""

    metric: MetricCode
    unit: str
    start: datetime
    end: datetime
    results: tuple[ChannelResult, ...]
    windows: int = 0
    gaps: tuple[tuple[int, str], ...] = ()
    partial_windows: int = 0
    series_cut: bool = False

    @property
    def partial(self) -> bool:
        return any(r.result.partial for r in self.results)


def window_values(computed: Sequence[Computed], muscles: Mapping[str, str]) -> list[dict[str, Any]]:
    """What a window row keeps of its metrics (JSON): metric, channel, muscle (the binding's), value, unit,
    status."""
    return [
        {
            "metric": c.metric.value,
            "channel": c.channel,
            "muscle": muscles.get(c.channel) if c.channel is not None else None,
            "value": c.value,
            "unit": c.unit,
            "status": c.status,
        }
        for c in computed
    ]


def _datum(value: float | None) -> str:
    return "E" if value is None or not math.isfinite(value) else f"{value:.6g}"


def window_series(windows: Sequence[StoredWindow], metric: str, channel: str, unit: str) -> Samples | None:
    """The series of one window metric of one channel over the trial's windows (index 0 .. the last), "E"
    where a window has no value (a gap, a window never recorded); None when no window gives that metric."""
    if not windows or not any((metric, channel) in w.values for w in windows):
        return None
    by_index = {w.index: w for w in windows}
    last = min(max(by_index), MAX_SERIES_WINDOWS - 1)
    data = []
    for i in range(last + 1):
        w = by_index.get(i)
        data.append(_datum(None if w is None or w.status == "gap" else w.values.get((metric, channel))))
    return Samples(period_ms=WINDOW_PERIOD_MS, factor=1.0, unit=unit, data=" ".join(data))


def trial_summaries(
    computed: Sequence[Computed],
    windows: Sequence[StoredWindow],
    *,
    start: datetime,
    end: datetime,
) -> list[TrialSummary]:
    """Group a closed trial's results by metric code (in the order they were computed), each channel with
    its window series. A window metric of a channel without a whole-trial result (a recording too short for
    the whole-recording metrics) is still summarised: its whole-trial result `not-computable`, its series
    kept."""
    order: dict[MetricCode, list[Computed]] = {}
    for c in computed:
        order.setdefault(c.metric, []).append(c)
    seen = {(c.metric.value, c.channel) for c in computed}
    window_only: dict[tuple[str, str], str] = {}
    for w in windows:
        for key in w.values:
            if key not in seen and key[0] in _CODES:
                window_only.setdefault(key, "")
    for metric, channel in window_only:
        code = MetricCode(metric)
        order.setdefault(code, []).append(
            Computed(
                code,
                None,
                _window_unit(windows, metric, channel),
                start,
                end,
                channel,
                status=NOT_COMPUTABLE,
                reason="no whole-trial value: the recording is too short for whole-recording metrics",
            )
        )
    gaps = tuple((w.index, w.reason or "not computable") for w in windows if w.status == "gap")
    partial_windows = sum(1 for w in windows if w.status == "partial")
    cut = bool(windows) and max(w.index for w in windows) >= MAX_SERIES_WINDOWS
    out = []
    for metric, items in order.items():
        results = []
        for c in items:
            series = None
            if c.channel is not None and c.metric in (*WINDOW_METRICS, MetricCode.EMG_PERCENT_MVC):
                series = window_series(windows, c.metric.value, c.channel, c.unit)
            results.append(ChannelResult(c, series))
        first = items[0]
        with_series = any(r.series is not None for r in results)
        out.append(
            TrialSummary(
                metric=metric,
                unit=first.unit,
                start=min(c.start for c in items),
                end=max(c.end for c in items),
                results=tuple(results),
                windows=len(windows) if with_series else 0,
                gaps=gaps if with_series else (),
                partial_windows=partial_windows if with_series else 0,
                series_cut=cut and with_series,
            )
        )
    return out


def _window_unit(windows: Sequence[StoredWindow], metric: str, channel: str) -> str:
    for w in windows:
        unit = w.units.get((metric, channel))
        if unit is not None:
            return unit
    return "1"
