"""Seeded synthetic stand-ins for RML2016.10a, RadioML 2018.01A and Sig2019-12.

``synthesize(name, per_class_snr, seed)`` makes ``per_class_snr`` frames for every (class, SNR)
pair of the dataset's spec, following the public generation recipes (paper-notes section 4):
baseband modulation (``fcos.data.modulators``), then the GNU Radio-like dynamic channel
(``fcos.data.channel``), AWGN at the labelled SNR, a window of the spec's length cut at a
random offset, and per-vector normalisation. All frames of one (class, SNR) pair are generated
together with array operations (no loop over frames).

The default options of each dataset live in ``DEFAULTS`` (the single source of truth);
``synthesize(..., **options)`` overrides them, and the effective options are recorded in
``RawDataset.info["options"]`` so a manifest says exactly how the data were made.

Options (all datasets accept all keys; defaults differ per dataset, see ``DEFAULTS``):

Noise and scaling
    ``snr_convention`` ("true" | "gnuradio"): "true" sets the noise so that the SNR per complex
    sample of the received (faded) signal equals the label; "gnuradio" reproduces the RML2016
    generator, whose noise amplitude 10^(-snr/10) against unit signal power makes the true SNR
    about twice the label in dB.
    ``snr_reference`` ("frame" | "batch"): with "true", measure the signal power per frame
    (each vector has exactly its labelled SNR) or over the (class, SNR) batch (the label is
    the average; fading and audio loudness spread single frames around it).
    ``normalization`` ("l1" | "power" | "none"): per-vector scaling; "l1" divides by the sum of
    sample magnitudes (RML2016.10a), "power" gives unit mean power (RML2018-style).
    ``ssb_quirk`` (bool): make every AM-SSB class noise only, as RML2016.10a's AM-SSB is.
Modulation
    ``symbol_source`` ("text" | "random"): bits of text-like ASCII bytes, unwhitened, as the
    RML2016 generator used (a book), or i.i.d. uniform symbols.
    ``sample_rate_hz`` (Hz, > 0): nominal sample rate for all Hz-valued options.
    ``sps`` (int 2..64): samples per symbol; ``rolloff`` (0..1): RRC excess bandwidth;
    ``rrc_span`` (int 2..32, symbols; rounded up to even).
    ``gfsk_sensitivity`` (rad/sample), ``gfsk_bt``: GNU Radio gfsk_mod parameters.
    ``cpfsk_index``: modulation index of CPFSK; ``fsk_index``: of 2FSK/4FSK; ``gmsk_bt``.
    ``am_index``: AM modulation depth with carrier; ``fm_deviation_hz``; ``fm_preemphasis_us``.
Audio-like source (WBFM/FM, AM-DSB*, AM-SSB*)
    ``audio_tones`` (int): tones per frame; ``audio_band_hz`` ([lo, hi] Hz): tone range;
    ``audio_level_db`` ([lo, hi] dBFS): RMS level of non-silent frames;
    ``audio_silence_prob`` (0..1): probability that a frame is silent (speech pause).
Channel
    ``channel`` (bool): False disables SRO, CFO, fading and multipath (AWGN remains).
    ``window_offset_max`` (int samples >= 0): windows start at a random offset in [0, this].
    ``sro_std_hz``/``sro_max_hz``, ``cfo_std_hz``/``cfo_max_hz``: per-sample random-walk step
    and bound of the sample-rate and carrier offsets; ``drift_samples``: how long the walk runs
    before a window (the RML2016 generator restarted its channel every 10,000 samples).
    ``rician_k`` (linear), ``doppler_hz``, ``fading_sinusoids`` (int): Rician fading per tap.
    ``multipath_delays`` (samples, fractional, each 0..5) and ``multipath_mags`` (same length).

Determinism: frames of (class c, SNR s) come from a generator seeded by (seed, dataset, c, s),
so the same arguments give byte-identical arrays, and a subset of SNRs reproduces the same
frames as the full grid for those SNRs.
"""

from __future__ import annotations

import copy
import math
import os
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError
from . import channel as ch
from .modulators import CATALOG, modulate
from .rawdataset import RawDataset
from .split import check_seed
from .specs import DatasetSpec, get_spec

#: Bumped whenever a change alters the generated arrays for unchanged arguments.
GENERATOR_VERSION = "2"

#: Samples (burst length x frames) generated per chunk: bounds memory for long frames.
_CHUNK_SAMPLES = 1 << 19

# Shared defaults: the RML2016.10a recipe (GNU Radio dynamic channel at 200 kHz).
_RML2016_DEFAULTS: dict[str, Any] = {
    "snr_convention": "true",
    "snr_reference": "frame",
    "normalization": "l1",
    "ssb_quirk": False,
    # The generator's digital source was a plain-text book: keep its skewed, unwhitened bits.
    "symbol_source": "text",
    "sample_rate_hz": 200e3,
    "sps": 8,
    "rolloff": 0.35,
    "rrc_span": 10,
    "gfsk_sensitivity": 0.1,
    "gfsk_bt": 0.35,
    "cpfsk_index": 0.5,
    "fsk_index": 1.0,
    "gmsk_bt": 0.3,
    "am_index": 1.0,
    "fm_deviation_hz": 75e3,
    "fm_preemphasis_us": 75.0,
    "audio_tones": 6,
    "audio_band_hz": [100.0, 4000.0],
    "audio_level_db": [-30.0, -10.0],
    # Calibrated (bench/calibrate_synthetic.py, bench/README.md): speech pauses in half the
    # frames make silent WBFM look like an AM-DSB carrier, as in the real set.
    "audio_silence_prob": 0.5,
    "channel": True,
    "window_offset_max": 64,
    "sro_std_hz": 0.01,
    "sro_max_hz": 50.0,
    "cfo_std_hz": 0.01,
    "cfo_max_hz": 500.0,
    "drift_samples": 10000,
    "rician_k": 4.0,
    "doppler_hz": 1.0,
    "fading_sinusoids": 8,
    "multipath_delays": [0.0, 0.9, 1.7],
    "multipath_mags": [1.0, 0.8, 0.3],
}

#: Default options per dataset: the single source of truth (copied, never mutated).
DEFAULTS: dict[str, dict[str, Any]] = {
    "rml2016": dict(_RML2016_DEFAULTS),
    # RML2018.01A: same channel family, unit-power frames. Its exact recipe is not public.
    "rml2018": {**_RML2016_DEFAULTS, "normalization": "power", "symbol_source": "random",
                "window_offset_max": 128},
    # Sig2019-12: recipe unknown; a stand-in with the same channel and unit-power frames.
    # GFSK here: h ~ 0.5 (0.2 rad/sample x 8 sps / pi), BT 0.5, a near neighbour of MSK.
    "sig2019": {**_RML2016_DEFAULTS, "normalization": "power", "symbol_source": "random",
                "gfsk_sensitivity": 0.2, "gfsk_bt": 0.5},
}

_NOTES = {
    "rml2016": "RML2016.10a-like synthetic stand-in following the public GNU Radio recipe",
    "rml2018": "RadioML2018.01A-like synthetic stand-in (same channel family; exact recipe "
               "not public)",
    "sig2019": "Sig2019-12-like synthetic stand-in: the real dataset's classes and recipe are "
               "not public; class names and generation are our choice",
}


# --------------------------------------------------------------------------------------------
# Option validation
# --------------------------------------------------------------------------------------------


def _fail(key: str, expected: str, value: Any) -> None:
    raise ConfigError(f"synthetic option {key!r}: expected {expected}, got {value!r}")


def _number(lo: float, hi: float, lo_open: bool = False) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi
        if not ok:
            bound = "(" if lo_open else "["
            _fail(key, f"a number in {bound}{lo:g}, {hi:g}]", value)
        return float(value)
    return check


def _integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or not lo <= value <= hi:
            _fail(key, f"an integer in [{lo}, {hi}]", value)
        return int(value)
    return check


def _choice(*allowed: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in allowed:
            _fail(key, "one of " + ", ".join(repr(a) for a in allowed), value)
        return str(value)
    return check


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(key, "true or false", value)
    return bool(value)


def _pair(lo: float, hi: float) -> Callable[[str, Any], list]:
    def check(key: str, value: Any) -> list:
        try:
            a, b = (float(v) for v in value)
        except (TypeError, ValueError):
            _fail(key, f"a pair [lo, hi] within [{lo:g}, {hi:g}]", value)
        if not (lo <= a <= b <= hi):
            _fail(key, f"a pair [lo, hi] with {lo:g} <= lo <= hi <= {hi:g}", value)
        return [a, b]
    return check


def _float_list(lo: float, hi: float) -> Callable[[str, Any], list]:
    def check(key: str, value: Any) -> list:
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            values = []
        if not (1 <= len(values) <= 8) or not all(lo <= v <= hi for v in values):
            _fail(key, f"a list of 1 to 8 numbers in [{lo:g}, {hi:g}]", value)
        return values
    return check


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "snr_convention": _choice("true", "gnuradio"),
    "snr_reference": _choice("frame", "batch"),
    "normalization": _choice("l1", "power", "none"),
    "ssb_quirk": _boolean,
    "symbol_source": _choice("text", "random"),
    "sample_rate_hz": _number(1e3, 1e10),
    "sps": _integer(2, 64),
    "rolloff": _number(0.0, 1.0),
    "rrc_span": _integer(2, 32),
    "gfsk_sensitivity": _number(0.0, np.pi, lo_open=True),
    "gfsk_bt": _number(0.05, 2.0),
    "cpfsk_index": _number(0.0, 4.0, lo_open=True),
    "fsk_index": _number(0.0, 4.0, lo_open=True),
    "gmsk_bt": _number(0.05, 2.0),
    "am_index": _number(0.0, 2.0),
    "fm_deviation_hz": _number(0.0, 1e9),
    "fm_preemphasis_us": _number(0.0, 1e4),
    "audio_tones": _integer(1, 64),
    "audio_band_hz": _pair(1.0, 1e9),
    "audio_level_db": _pair(-120.0, 10.0),
    "audio_silence_prob": _number(0.0, 1.0),
    "channel": _boolean,
    "window_offset_max": _integer(0, 1 << 16),
    "sro_std_hz": _number(0.0, 1e9),
    "sro_max_hz": _number(0.0, 1e9),
    "cfo_std_hz": _number(0.0, 1e9),
    "cfo_max_hz": _number(0.0, 1e9),
    "drift_samples": _number(0.0, 1e12),
    "rician_k": _number(0.0, 1e6),
    "doppler_hz": _number(0.0, 1e9),
    "fading_sinusoids": _integer(1, 64),
    "multipath_delays": _float_list(0.0, float(ch.MAX_DELAY)),
    "multipath_mags": _float_list(0.0, 1e6),
}
assert all(set(d) == set(_VALIDATORS) for d in DEFAULTS.values())


def resolve_options(name: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``options`` over the dataset's defaults and validate every value.

    Returns a new JSON-able dict of effective options. Raises ConfigError (one line naming the
    key) for unknown keys or out-of-range values.
    """
    spec = get_spec(name)
    merged = copy.deepcopy(DEFAULTS[spec.name])
    for key, value in (options or {}).items():
        if key not in merged:
            raise ConfigError(f"unknown synthetic option {key!r} for {spec.name}: expected one "
                              f"of {', '.join(sorted(merged))}")
        merged[key] = value
    resolved = {key: _VALIDATORS[key](key, value) for key, value in merged.items()}
    # Cross-key constraints.
    if len(resolved["multipath_delays"]) != len(resolved["multipath_mags"]):
        _fail("multipath_mags", f"{len(resolved['multipath_delays'])} values (one per delay)",
              resolved["multipath_mags"])
    if sum(m * m for m in resolved["multipath_mags"]) <= 0:
        _fail("multipath_mags", "at least one positive magnitude", resolved["multipath_mags"])
    # SRO stretches the window; keep the stretch within the burst guard (1000 ppm).
    if resolved["sro_max_hz"] > 1e-3 * resolved["sample_rate_hz"]:
        _fail("sro_max_hz", f"at most {1e-3 * resolved['sample_rate_hz']:g} Hz (1000 ppm of "
              "sample_rate_hz)", resolved["sro_max_hz"])
    nyquist = resolved["sample_rate_hz"] / 2
    if resolved["audio_band_hz"][1] >= nyquist:
        _fail("audio_band_hz", f"an upper edge below {nyquist:g} Hz (half sample_rate_hz)",
              resolved["audio_band_hz"])
    # The fading gains are evaluated on a grid of ~32 points per Doppler cycle in the window.
    if resolved["doppler_hz"] > 0.01 * resolved["sample_rate_hz"]:
        _fail("doppler_hz", f"at most {0.01 * resolved['sample_rate_hz']:g} Hz (1% of "
              "sample_rate_hz)", resolved["doppler_hz"])
    if resolved["cfo_max_hz"] >= nyquist:
        _fail("cfo_max_hz", f"less than {nyquist:g} Hz (half sample_rate_hz)",
              resolved["cfo_max_hz"])
    return resolved


def _check_args(spec: DatasetSpec, per_class_snr: Any, seed: Any,
                snrs: Sequence[int] | None) -> tuple[int, int, list[int]]:
    if isinstance(per_class_snr, bool) or not isinstance(per_class_snr, (int, np.integer)) \
            or per_class_snr < 1:
        raise ConfigError(f"per_class_snr: expected a positive integer, got {per_class_snr!r}")
    seed = check_seed(seed)
    if snrs is None:
        grid = list(spec.snrs)
    elif isinstance(snrs, (str, bytes)):
        raise ConfigError(f"snrs: expected a list of integers in dB, got {snrs!r}")
    else:
        try:
            grid = [int(s) for s in snrs]
            ok = all(float(s) == int(s) for s in snrs)
        except (TypeError, ValueError):
            ok = False
        if not ok or not grid or any(not -60 <= s <= 100 for s in grid):
            raise ConfigError(f"snrs: expected a non-empty list of integers in [-60, 100] dB, "
                              f"got {snrs!r}")
        if len(set(grid)) != len(grid):
            raise ConfigError(f"snrs: duplicate values in {snrs!r}")
        grid = sorted(grid)
    return int(per_class_snr), int(seed), grid


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _batch_rng(name: str, seed: int, class_index: int, snr: int) -> np.random.Generator:
    # crc32 gives a stable per-dataset stream key (Python's hash() is salted per process).
    key = [seed, zlib.crc32(name.encode()), class_index, snr + 1000]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def generate_batch(class_name: str, snr: int, n: int, rng: np.random.Generator,
                   opts: dict[str, Any], length: int) -> np.ndarray:
    """``n`` frames of one (class, SNR) pair: float32 (n, 2, length), I row then Q row.

    ``opts`` must be the output of ``resolve_options``. Frames are made in chunks of at most
    ``_CHUNK_SAMPLES`` burst samples, all frames of a chunk at once.
    """
    burst_len = ch.burst_length(length, opts["window_offset_max"])
    chunk = max(1, _CHUNK_SAMPLES // burst_len)
    clean = np.empty((n, length), dtype=np.complex128)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        burst = modulate(class_name, rng, hi - lo, burst_len, opts)
        clean[lo:hi] = ch.propagate(rng, burst, length, opts)
    variance = ch.noise_power(clean, snr, opts["snr_convention"], opts["snr_reference"])
    out = np.empty((n, 2, length), dtype=np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        noisy = ch.normalize(ch.add_noise(rng, clean[lo:hi], variance[lo:hi]),
                             opts["normalization"])
        out[lo:hi, 0] = noisy.real
        out[lo:hi, 1] = noisy.imag
    return out


def _check_memory(nbytes: int, per_class_snr: int) -> None:
    """Refuse a synthetic set whose I/Q array alone would not fit in this machine's memory."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every platform reports it
        return
    if nbytes > physical:
        raise ConfigError(f"per_class_snr: {per_class_snr} frames per (class, SNR) would need "
                          f"{nbytes / 2**30:,.1f} GiB for the signals alone; this machine has "
                          f"{physical / 2**30:,.1f} GiB of memory")


def synthesize(name: str, per_class_snr: int, seed: int, snrs: Sequence[int] | None = None,
               *, progress: bool = False, **options: Any) -> RawDataset:
    """Generate a seeded synthetic stand-in for dataset ``name``.

    Args:
        name: "rml2016", "rml2018" or "sig2019" (see ``fcos.data.specs``).
        per_class_snr: frames per (class, SNR) pair.
        seed: non-negative integer; the same arguments give byte-identical arrays.
        snrs: SNR labels in dB to generate (default: the spec's grid); sorted ascending.
        progress: show a tqdm bar over (class, SNR) batches.
        **options: overrides of ``DEFAULTS[name]`` (see the module docstring).

    Returns:
        RawDataset with x float32 (N, 2, L), y int64 (N,), snr int16 (N,), ordered by class,
        then SNR, then frame; N = classes x len(snrs) x per_class_snr; source "synthetic";
        info records the generator version, arguments and effective options.

    Raises:
        ConfigError: unknown dataset or option, or an out-of-range argument (one line).
    """
    spec = get_spec(name)
    opts = resolve_options(spec.name, options)
    per_class_snr, seed, grid = _check_args(spec, per_class_snr, seed, snrs)
    missing = [c for c in spec.classes if c not in CATALOG]
    if missing:  # a spec gained a class the generator cannot make: a bug, not a user error
        raise RuntimeError(f"no synthetic modulator for {spec.name} classes {missing}")

    n_total = spec.num_classes * len(grid) * per_class_snr
    _check_memory(n_total * 2 * spec.length * 4, per_class_snr)
    x = np.empty((n_total, 2, spec.length), dtype=np.float32)
    y = np.repeat(np.arange(spec.num_classes, dtype=np.int64), len(grid) * per_class_snr)
    snr = np.tile(np.repeat(np.asarray(grid, dtype=np.int16), per_class_snr), spec.num_classes)

    pairs = [(c, s) for c in range(spec.num_classes) for s in grid]
    if progress:
        from tqdm import tqdm
        pairs = tqdm(pairs, desc=f"synthesize {spec.name}", unit="batch")
    for index, (c, s) in enumerate(pairs):
        rng = _batch_rng(spec.name, seed, c, s)
        x[index * per_class_snr:(index + 1) * per_class_snr] = generate_batch(
            spec.classes[c], s, per_class_snr, rng, opts, spec.length)

    info = {
        "generator": "fcos.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "dataset": spec.name,
        "stand_in": True,
        "note": _NOTES[spec.name],
        "per_class_snr": per_class_snr,
        "seed": seed,
        "snrs": grid,
        "options": opts,
    }
    warnings = [] if spec.public else [_NOTES[spec.name]]
    return RawDataset(x=x, y=y, snr=snr, spec=spec, source="synthetic", info=info,
                      warnings=warnings).validate()
