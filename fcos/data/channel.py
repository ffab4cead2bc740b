"""Vectorised channel model for the synthetic datasets (after GNU Radio's dynamic channel).

The RML2016.10a recipe passes each transmitted burst through
``channels.dynamic_channel_model``: sample-rate offset (SRO) and carrier-frequency offset (CFO)
as bounded random walks, Rician fading made of sums of sinusoids on each of three multipath
taps with fractional delays, then AWGN. Windows of ``length`` samples are then cut from the
output at random offsets. Here every step works on a whole batch of frames at once:

* window + SRO + multipath delay: each tap's delayed, rate-offset copy of the burst is read at
  fractional positions ``start + t * (1 + sro) - delay`` by 4-point (cubic) Lagrange
  interpolation, so the random window offset, the SRO and the fractional tap delays are one
  gather per tap;
* fading: each tap gets an independent Rician gain (line of sight + ``sinusoids`` scattered
  paths, Doppler ``doppler_hz``); the gain is evaluated on a coarse time grid and linearly
  interpolated, since a 1 Hz Doppler barely changes it over a few hundred samples;
* CFO: a per-frame frequency offset and random phase;
* noise and normalisation are separate functions (``noise_power``, ``add_noise``,
  ``normalize``) because the SNR convention may need the clean power of the whole batch.

SRO and CFO: GNU Radio moves each offset by a N(0, std) step per sample, clipped to +-max. A
window drawn from a stream sees the walk's accumulated value; we draw it directly as
``N(0, std * sqrt(u))`` clipped to +-max, with ``u`` uniform in [0, drift_samples) (the
RML2016 generator restarted the channel every 10,000 samples) and hold it fixed over the
window (the walk moves it by ~std * sqrt(length), far below one hertz).
"""

from __future__ import annotations

import numpy as np

#: Samples of burst kept before the earliest window start and after the latest window end, so
#: that interpolation (1 sample back, 2 ahead) and the largest allowed tap delay stay inside.
GUARD = 8
MAX_DELAY = GUARD - 3


def burst_length(length: int, window_offset_max: int) -> int:
    """Samples a modulator must produce so that any window offset fits with its guards."""
    return length + int(window_offset_max) + 2 * GUARD


def _bounded_walk(rng: np.random.Generator, n: int, std_hz: float, max_hz: float,
                  drift_samples: float, sample_rate_hz: float) -> np.ndarray:
    """Per-frame offsets (n, 1) in cycles per sample; see the module docstring."""
    if std_hz <= 0 or max_hz <= 0 or drift_samples <= 0:
        return np.zeros((n, 1))
    elapsed = rng.uniform(0, drift_samples, size=(n, 1))
    hz = np.clip(rng.normal(0.0, 1.0, size=(n, 1)) * std_hz * np.sqrt(elapsed), -max_hz, max_hz)
    return hz / sample_rate_hz


def cubic_sample(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Read rows of ``x`` (n, M) at fractional positions ``pos`` (n, L) by cubic Lagrange.

    Positions must satisfy 1 <= pos < M - 2. Returns (n, L) with the dtype of ``x``.
    """
    base = np.floor(pos)
    mu = pos - base
    idx = base.astype(np.intp)
    # Lagrange weights for the neighbours at offsets -1, 0, 1, 2.
    m1, p1, p2 = mu - 1.0, mu + 1.0, mu - 2.0
    weights = (-mu * m1 * p2 / 6.0, p1 * m1 * p2 / 2.0, -p1 * mu * p2 / 2.0, p1 * mu * m1 / 6.0)
    out = np.zeros(pos.shape, dtype=x.dtype)
    for offset, w in zip((-1, 0, 1, 2), weights):  # 4 gathers, each over the whole batch
        out += w * np.take_along_axis(x, idx + offset, axis=1)
    return out


def rician_gains(rng: np.random.Generator, n: int, taps: int, length: int, k_factor: float,
                 doppler_hz: float, sinusoids: int, sample_rate_hz: float) -> np.ndarray:
    """Independent Rician fading gains for each frame and tap: complex (n, taps, length).

    Sum-of-sinusoids model: g(t) = sqrt(K/(K+1)) exp(j(w_d cos(theta0) t + phi0))
    + sqrt(1/((K+1) N)) sum_i exp(j(w_d cos(alpha_i) t + phi_i)), with angles
    alpha_i = (2 pi i + theta) / N; E|g|^2 = 1. Evaluated on a coarse grid (fine enough for
    the Doppler over the window) and linearly interpolated.
    """
    window_cycles = doppler_hz * length / sample_rate_hz
    grid = 2 + int(np.ceil(window_cycles * 32))  # ~32 points per Doppler cycle
    t = np.linspace(0.0, length - 1, grid) / sample_rate_hz  # seconds
    t0 = rng.uniform(0, 1e3, size=(n, taps, 1, 1))  # random instant of a long fading process
    w_d = 2 * np.pi * doppler_hz
    # Line-of-sight component.
    theta0 = rng.uniform(-np.pi, np.pi, size=(n, taps, 1))
    phi0 = rng.uniform(0, 2 * np.pi, size=(n, taps, 1))
    los = np.exp(1j * (w_d * np.cos(theta0) * (t0[..., 0] + t) + phi0))
    # Scattered component.
    theta = rng.uniform(-np.pi, np.pi, size=(n, taps, 1, 1))
    alpha = (2 * np.pi * np.arange(sinusoids)[None, None, :, None] + theta) / sinusoids
    phi = rng.uniform(0, 2 * np.pi, size=(n, taps, sinusoids, 1))
    scat = np.exp(1j * (w_d * np.cos(alpha) * (t0 + t) + phi)).sum(axis=2)
    coarse = (np.sqrt(k_factor / (k_factor + 1)) * los
              + np.sqrt(1.0 / ((k_factor + 1) * sinusoids)) * scat)  # (n, taps, grid)
    if grid == 2:  # the common case: a straight line across the window
        ramp = np.linspace(0.0, 1.0, length)
        return coarse[..., :1] + (coarse[..., 1:] - coarse[..., :1]) * ramp
    pos = np.linspace(0.0, grid - 1, length)
    lo = np.minimum(np.floor(pos).astype(np.intp), grid - 2)
    frac = pos - lo
    return coarse[..., lo] * (1 - frac) + coarse[..., lo + 1] * frac


def propagate(rng: np.random.Generator, burst: np.ndarray, length: int, opts: dict) -> np.ndarray:
    """Cut one window per frame from ``burst`` and pass it through the channel (no noise).

    Args:
        burst: complex (n, M) transmitted signal, M == burst_length(length, offset_max).
        length: window length L.
        opts: effective synthetic options (``channel``, ``window_offset_max``, SRO/CFO/fading/
            multipath keys, ``sample_rate_hz``).
    Returns:
        complex128 (n, L) received noiseless windows.
    """
    n = burst.shape[0]
    offset_max = int(opts["window_offset_max"])
    if not opts["channel"]:
        # Integer offsets only: no interpolation, so the transmitted samples pass unchanged.
        start = GUARD + rng.integers(0, offset_max + 1, size=(n, 1))
        return np.take_along_axis(burst, start + np.arange(length)[None, :], axis=1)

    fs = float(opts["sample_rate_hz"])
    start = GUARD + rng.uniform(0, offset_max, size=(n, 1))
    sro = _bounded_walk(rng, n, float(opts["sro_std_hz"]), float(opts["sro_max_hz"]),
                        float(opts["drift_samples"]), fs)
    cfo = _bounded_walk(rng, n, float(opts["cfo_std_hz"]), float(opts["cfo_max_hz"]),
                        float(opts["drift_samples"]), fs)
    delays = np.asarray(opts["multipath_delays"], dtype=np.float64)
    mags = np.asarray(opts["multipath_mags"], dtype=np.float64)
    mags = mags / np.sqrt(np.sum(mags ** 2))  # unit total power: fading keeps E|s|^2
    gains = rician_gains(rng, n, delays.size, length, float(opts["rician_k"]),
                         float(opts["doppler_hz"]), int(opts["fading_sinusoids"]), fs)
    t = np.arange(length, dtype=np.float64)[None, :]
    # SRO stretches time around the window start: a 50 Hz offset at 200 kHz is 250 ppm.
    pos = start + t * (1.0 + sro)
    out = np.zeros((n, length), dtype=np.complex128)
    for tap, (delay, mag) in enumerate(zip(delays, mags)):  # 3 taps, each over the whole batch
        out += mag * gains[:, tap, :] * cubic_sample(burst, pos - delay)
    cfo_phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    return out * np.exp(1j * (2 * np.pi * cfo * t + cfo_phase))


def noise_power(clean: np.ndarray, snr_db: float, convention: str,
                reference: str = "frame") -> np.ndarray:
    """Complex noise variance per sample, shape (n, 1), for one (class, SNR) batch.

    ``convention="true"``: the clean signal power divided by 10^(snr/10), so the SNR per
    complex sample equals the label. ``reference="frame"`` measures the power per frame (every
    vector has exactly its labelled SNR); ``"batch"`` uses the batch mean (the label is the
    average SNR; fading and audio loudness move single frames around it). A frame (or batch)
    with no signal at all (silent SSB audio, ``ssb_quirk``) falls back to unit reference power,
    the modulators' nominal power, i.e. it is noise only.
    ``convention="gnuradio"``: the RML2016 generator's quirk, noise amplitude 10^(-snr/10)
    against a nominal unit-power signal, i.e. variance 10^(-snr/5) whatever the signal: the
    true SNR is about twice the label in dB.
    """
    n = clean.shape[0]
    if convention == "gnuradio":
        return np.full((n, 1), 10 ** (-snr_db / 5))
    power = np.mean(np.abs(clean) ** 2, axis=1, keepdims=True)
    if reference == "batch":
        power = np.full((n, 1), np.mean(power))
    power = np.where(power > 1e-20, power, 1.0)
    return power / 10 ** (snr_db / 10)


def add_noise(rng: np.random.Generator, clean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Add circular complex white Gaussian noise; ``variance`` (n, 1): total per sample."""
    scale = np.sqrt(variance / 2)
    noise = rng.standard_normal(size=clean.shape) + 1j * rng.standard_normal(size=clean.shape)
    return clean + scale * noise


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """Per-frame scaling of complex (n, L) windows.

    ``"l1"``: divide by the sum of sample magnitudes (RML2016.10a's generator), ``"power"``:
    unit mean power per frame, ``"none"``: unchanged. All-zero frames are left at zero.
    """
    if mode == "none":
        return x
    if mode == "l1":
        scale = np.sum(np.abs(x), axis=1, keepdims=True)
    elif mode == "power":
        scale = np.sqrt(np.mean(np.abs(x) ** 2, axis=1, keepdims=True))
    else:  # validated upstream; a bad value here is a bug
        raise ValueError(f"unknown normalization {mode!r}")
    return x / np.where(scale > 0, scale, 1.0)
