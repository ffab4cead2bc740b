"""Vectorised baseband modulators for the synthetic datasets.

Every modulator makes a whole batch at once: it takes a ``numpy.random.Generator``, the number of
frames ``n`` and the number of samples ``length`` and returns complex128 baseband of shape
``(n, length)`` at one sample per time step of the nominal sample rate (``sample_rate_hz``).
Nothing loops over frames. Signals have nominal unit average power (FM/CPM exactly, linear
modulations for uniform symbols, audio-driven AM approximately): that is the reference of the
"gnuradio" SNR convention, while the "true" convention measures the actual power.

``CATALOG`` maps a class name, as spelled in ``fcos.data.specs``, to the modulator that makes
it. It is a catalogue of modulations, not a per-dataset class list: a dataset's classes come
from its spec and are looked up here by name.

Timing convention of the linear (pulse-shaped) modulators: sample ``k`` of the output is a
symbol peak when ``k % sps == 0`` (the RRC span is taken even for this), which lets tests
matched-filter and sample at the right phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import signal as sps_signal

# --------------------------------------------------------------------------------------------
# Symbol alphabets
# --------------------------------------------------------------------------------------------


def _unit_power(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.complex128)
    return points / np.sqrt(np.mean(np.abs(points) ** 2))


def psk_points(order: int) -> np.ndarray:
    """M-PSK points on the unit circle; BPSK and QPSK as in GNU Radio (QPSK at 45 degrees)."""
    offset = np.pi / 4 if order == 4 else 0.0
    return np.exp(1j * (2 * np.pi * np.arange(order) / order + offset))


def pam_points(order: int) -> np.ndarray:
    """Bipolar M-PAM / M-ASK levels (-M+1, ..., M-1) on the real axis, unit power."""
    return _unit_power(np.arange(-order + 1, order, 2, dtype=np.float64))


def ook_points() -> np.ndarray:
    """On-off keying {0, 1}, scaled to unit average power."""
    return _unit_power(np.array([0.0, 1.0]))


def qam_points(order: int) -> np.ndarray:
    """Square M-QAM for even log2(M); cross constellations (32, 128) for odd; unit power.

    A cross constellation is the smallest square grid with side 6 * 2**((k-5)/2) minus its four
    corner squares (side/6 points each way), e.g. 6x6 - 4 = 32 and 12x12 - 16 = 128.
    """
    k = int(round(np.log2(order)))
    if 2 ** k != order:
        raise ValueError(f"QAM order must be a power of two, got {order}")
    if k % 2 == 0:
        side = 2 ** (k // 2)
        levels = np.arange(-side + 1, side, 2, dtype=np.float64)
        grid = levels[:, None] + 1j * levels[None, :]
        return _unit_power(grid.ravel())
    side = 6 * 2 ** ((k - 5) // 2)
    corner = side // 6
    levels = np.arange(-side + 1, side, 2, dtype=np.float64)
    ii, qq = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    in_corner = ((ii < corner) | (ii >= side - corner)) & ((qq < corner) | (qq >= side - corner))
    grid = levels[ii[~in_corner]] + 1j * levels[qq[~in_corner]]
    assert grid.size == order
    return _unit_power(grid)


# Ring layouts (points per ring, relative radius): DVB-S2 for 16/32APSK, DVB-S2X-like for the
# larger ones. Radii only need to be plausible for a stand-in.
_APSK_RINGS = {
    16: ((4, 1.0), (12, 2.57)),
    32: ((4, 1.0), (12, 2.53), (16, 4.30)),
    64: ((4, 1.0), (12, 2.4), (20, 4.3), (28, 7.0)),
    128: ((8, 1.0), (16, 2.0), (24, 3.0), (32, 4.0), (48, 5.1)),
}


def apsk_points(order: int) -> np.ndarray:
    """M-APSK as concentric PSK rings (each ring rotated by half a point spacing), unit power."""
    points = []
    for ring, (count, radius) in enumerate(_APSK_RINGS[order]):
        phase = np.pi / count * (ring % 2)
        points.append(radius * np.exp(1j * (2 * np.pi * np.arange(count) / count + phase)))
    return _unit_power(np.concatenate(points))


# --------------------------------------------------------------------------------------------
# Symbol source
# --------------------------------------------------------------------------------------------

# Approximate character frequencies of English prose (per mille), used to make text-like bytes.
# The RML2016 generator fed its digital modulators with the bits of a plain-text book, neither
# whitened nor scrambled: ASCII's constant top bit and the skewed letter patterns leave many
# constellation points rarely used, one reason QAM16/QAM64 and QPSK/8PSK are confused there.
_TEXT_FREQ = {
    " ": 170, "e": 90, "t": 66, "a": 60, "o": 58, "i": 53, "n": 53, "s": 49, "h": 48,
    "r": 44, "d": 33, "l": 30, "u": 21, "c": 19, "m": 19, "w": 16, "f": 16, "g": 15,
    "y": 15, "p": 13, "b": 11, "v": 8, "k": 6, "x": 1, "j": 1, "q": 1, "z": 1,
    "\n": 20, ",": 14, ".": 10, "'": 5, ";": 2, "!": 2, "?": 2, "-": 2,
    "T": 5, "I": 5, "A": 3, "S": 2, "H": 2, "W": 2, "M": 2, "B": 2, "C": 2, "O": 2,
}
_TEXT_BYTES = np.frombuffer("".join(_TEXT_FREQ).encode("ascii"), dtype=np.uint8)
_TEXT_CDF = np.cumsum(np.array(list(_TEXT_FREQ.values()), dtype=np.float64))
_TEXT_CDF /= _TEXT_CDF[-1]


def draw_symbols(rng: np.random.Generator, n: int, n_sym: int, order: int,
                 opts: dict) -> np.ndarray:
    """Symbol indices in [0, order), shape (n, n_sym), from ``opts["symbol_source"]``.

    ``"random"``: i.i.d. uniform. ``"text"``: bits of text-like ASCII bytes, unpacked least
    significant bit first (GNU Radio's packed_to_unpacked with GR_LSB_FIRST) from a random bit
    offset, grouped into log2(order)-bit symbols (first bit most significant). ``order`` must be
    a power of two for "text".
    """
    if opts["symbol_source"] == "random":
        return rng.integers(0, order, size=(n, n_sym))
    k = int(round(np.log2(order)))
    n_bits = n_sym * k
    n_bytes = (n_bits + 7) // 8 + 1
    chars = _TEXT_BYTES[np.searchsorted(_TEXT_CDF, rng.random(size=(n, n_bytes)), side="right")
                        .clip(max=_TEXT_BYTES.size - 1)]
    bits = np.unpackbits(chars, axis=1, bitorder="little")
    offset = rng.integers(0, 8, size=(n, 1))
    bits = np.take_along_axis(bits, offset + np.arange(n_bits)[None, :], axis=1)
    weights = 1 << np.arange(k - 1, -1, -1)
    return bits.reshape(n, n_sym, k).astype(np.int64) @ weights


# --------------------------------------------------------------------------------------------
# Pulse shapes
# --------------------------------------------------------------------------------------------


def rrc_taps(sps: int, rolloff: float, span: int) -> np.ndarray:
    """Root-raised-cosine taps, ``span * sps + 1`` long, peak in the middle, unit energy.

    ``span`` is in symbols. The singular points t = 0 and |t| = T/(4 rolloff) use the limits.
    """
    t = np.arange(-span * sps / 2, span * sps / 2 + 1) / sps  # in symbols
    beta = float(rolloff)
    h = np.empty_like(t)
    for i, ti in enumerate(t):  # span*sps+1 taps, once per call: not a per-frame loop
        if abs(ti) < 1e-12:
            h[i] = 1.0 - beta + 4 * beta / np.pi
        elif beta > 0 and abs(abs(ti) - 1 / (4 * beta)) < 1e-9:
            h[i] = beta / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                        + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
        else:
            num = np.sin(np.pi * ti * (1 - beta)) + 4 * beta * ti * np.cos(np.pi * ti * (1 + beta))
            den = np.pi * ti * (1 - (4 * beta * ti) ** 2)
            h[i] = num / den
    return h / np.sqrt(np.sum(h ** 2))


def gaussian_taps(sps: int, bt: float, span: int = 4) -> np.ndarray:
    """Gaussian frequency-pulse filter (bandwidth-time product ``bt``), taps summing to 1."""
    t = np.arange(-span * sps / 2, span * sps / 2 + 1) / sps  # in symbols
    sigma = np.sqrt(np.log(2)) / (2 * np.pi * bt)  # in symbols
    h = np.exp(-0.5 * (t / sigma) ** 2)
    return h / h.sum()


# --------------------------------------------------------------------------------------------
# Digital modulators
# --------------------------------------------------------------------------------------------


def _symbols_needed(length: int, sps: int, extra: int) -> int:
    return int(np.ceil(length / sps)) + extra + 1


def linear(rng: np.random.Generator, n: int, length: int, opts: dict, *, points: np.ndarray,
           offset_q: bool = False) -> np.ndarray:
    """Pulse-shaped linear modulation (PSK/PAM/ASK/QAM/APSK) with an RRC filter.

    Symbols come from ``draw_symbols`` (``symbol_source`` option); output (n, length)
    complex128, unit average power for uniform symbols. ``offset_q`` delays the quadrature rail by half a symbol (OQPSK).
    """
    sps, span = int(opts["sps"]), int(opts["rrc_span"])
    span += span % 2  # even span puts symbol peaks at k % sps == 0
    h = rrc_taps(sps, float(opts["rolloff"]), span) * np.sqrt(sps)  # unit output power
    half = sps // 2 if offset_q else 0
    n_sym = _symbols_needed(length + half, sps, span)
    symbols = points[draw_symbols(rng, n, n_sym, points.size, opts)]
    start = span * sps  # first sample with full filter support
    if not offset_q:
        shaped = sps_signal.upfirdn(h, symbols, up=sps, axis=1)
        return shaped[:, start:start + length]
    i_rail = sps_signal.upfirdn(h, symbols.real, up=sps, axis=1)
    q_rail = sps_signal.upfirdn(h, symbols.imag, up=sps, axis=1)
    return i_rail[:, start + half:start + half + length] + 1j * q_rail[:, start:start + length]


def cpm(rng: np.random.Generator, n: int, length: int, opts: dict, *, levels: int,
        phase_per_symbol: float, gaussian_bt: float | None = None) -> np.ndarray:
    """Continuous-phase frequency modulation (CPFSK, MSK, M-FSK, GFSK, GMSK).

    Symbol values are the ``levels``-ary odd integers (+-1, +-3, ...); each symbol advances the
    phase by ``phase_per_symbol * value`` radians (= pi * h * value for modulation index h),
    spread over its ``sps`` samples by a rectangular pulse, or by a rectangular pulse smoothed
    with a Gaussian filter of bandwidth-time ``gaussian_bt``. Output (n, length), |s| = 1.
    """
    sps = int(opts["sps"])
    guard = 4  # symbols of Gaussian filter support dropped at the start
    n_sym = _symbols_needed(length, sps, 2 * guard)
    values = (2 * draw_symbols(rng, n, n_sym, levels, opts) - (levels - 1)).astype(np.float64)
    freq = np.repeat(values, sps, axis=1)  # NRZ, one value per sample
    if gaussian_bt is not None:
        freq = sps_signal.oaconvolve(freq, gaussian_taps(sps, gaussian_bt)[None, :],
                                     mode="same", axes=1)
    freq = freq[:, guard * sps:guard * sps + length]
    phase = np.cumsum(freq * (phase_per_symbol / sps), axis=1)
    # Random starting phase so frames do not all begin at the same point of the circle.
    phase += rng.uniform(0, 2 * np.pi, size=(n, 1))
    return np.exp(1j * phase)


# --------------------------------------------------------------------------------------------
# Audio-like source and analog modulators
# --------------------------------------------------------------------------------------------


@dataclass
class Audio:
    """A batch of audio-like waveforms as sums of tones, evaluated analytically.

    Real speech/music is unavailable offline; each frame gets ``K`` tones with random
    frequencies (log-uniform in the audio band), phases and Rayleigh amplitudes, i.e. a seeded
    band-limited random process. A frame is silent with probability ``silence_prob`` (all
    amplitudes zero: speech pauses, which make WBFM and AM-DSB look alike as in RML2016);
    otherwise its RMS level is uniform in dB over ``level_db`` (dB full scale).

    Attributes (arrays of shape (n, K)): ``amp`` amplitude, ``omega`` rad/sample at the
    nominal sample rate, ``phase`` rad.
    """

    amp: np.ndarray
    omega: np.ndarray
    phase: np.ndarray
    t: np.ndarray = field(repr=False)  # (length,) sample times

    @classmethod
    def draw(cls, rng: np.random.Generator, n: int, length: int, opts: dict) -> "Audio":
        k = int(opts["audio_tones"])
        lo_hz, hi_hz = (float(v) for v in opts["audio_band_hz"])
        freq = np.exp(rng.uniform(np.log(lo_hz), np.log(hi_hz), size=(n, k)))
        amp = rng.rayleigh(1.0, size=(n, k))
        amp /= np.sqrt(0.5 * np.sum(amp ** 2, axis=1, keepdims=True))  # unit RMS per frame
        lo_db, hi_db = (float(v) for v in opts["audio_level_db"])
        level = 10 ** (rng.uniform(lo_db, hi_db, size=(n, 1)) / 20)
        silent = rng.random(size=(n, 1)) < float(opts["audio_silence_prob"])
        amp *= np.where(silent, 0.0, level)
        omega = 2 * np.pi * freq / float(opts["sample_rate_hz"])
        phase = rng.uniform(0, 2 * np.pi, size=(n, k))
        return cls(amp, omega, phase, np.arange(length, dtype=np.float64))

    def tones(self, extra_phase: np.ndarray | float = 0.0) -> np.ndarray:
        """exp(j(omega t + phase + extra_phase)) for every tone: complex (n, K, length).

        Made as coarse phasors (every ``block`` samples) times fine phasors (within a block):
        ~block times fewer complex exponentials than evaluating every sample directly.
        """
        block = 16
        n, k = self.omega.shape
        length = self.t.size
        n_blocks = -(-length // block)
        phase = self.phase + extra_phase
        coarse = np.exp(1j * (self.omega[:, :, None] * (block * np.arange(n_blocks))
                              + phase[:, :, None]))
        fine = np.exp(1j * self.omega[:, :, None] * np.arange(block))
        out = coarse[:, :, :, None] * fine[:, :, None, :]
        return out.reshape(n, k, n_blocks * block)[:, :, :length]

    def real(self) -> np.ndarray:
        """a(t), shape (n, length)."""
        return np.einsum("nk,nkt->nt", self.amp, self.tones().real)

    def analytic(self) -> np.ndarray:
        """a(t) + j H{a}(t) (upper sideband), shape (n, length) complex."""
        return np.matmul(self.amp[:, None, :].astype(np.complex128), self.tones())[:, 0, :]

    def fm_phase(self, deviation_hz: float, sample_rate_hz: float,
                 preemphasis_s: float) -> np.ndarray:
        """2 pi f_dev * integral of the pre-emphasised audio, in rad; shape (n, length).

        The integral of each tone is exact (sin / omega), so no cumulative-sum drift. The
        broadcast-FM pre-emphasis H(f) = 1 + j 2 pi f tau scales and shifts each tone.
        """
        w_sec = self.omega * sample_rate_hz  # rad/s
        gain = 1 + 1j * w_sec * preemphasis_s
        amp = self.amp * np.abs(gain)
        integral = np.einsum("nk,nkt->nt", amp / self.omega, self.tones(np.angle(gain)).imag)
        return 2 * np.pi * deviation_hz / sample_rate_hz * integral


def _mid_level(opts: dict) -> float:
    lo_db, hi_db = (float(v) for v in opts["audio_level_db"])
    return 10 ** ((lo_db + hi_db) / 40)


def am_dsb(rng, n, length, opts, *, carrier: bool) -> np.ndarray:
    """AM double sideband: 1 + m a(t) with carrier, a(t) / a_mid suppressed (real baseband)."""
    audio = Audio.draw(rng, n, length, opts).real()
    if carrier:
        return (1.0 + float(opts["am_index"]) * audio).astype(np.complex128)
    return (audio / _mid_level(opts)).astype(np.complex128)


def am_ssb(rng, n, length, opts, *, carrier: bool) -> np.ndarray:
    """AM single (upper) sideband of the audio, with or without a carrier.

    With ``ssb_quirk`` the output is all zeros: RML2016.10a's AM-SSB multiplied the audio by a
    0 Hz sine (sin 0 = 0), so that class is noise only.
    """
    audio = Audio.draw(rng, n, length, opts)  # drawn even when unused: same random stream
    if opts["ssb_quirk"]:
        return np.zeros((n, length), dtype=np.complex128)
    usb = audio.analytic() / np.sqrt(2)  # same power as the real audio
    if carrier:
        return 1.0 + float(opts["am_index"]) * usb
    return usb / _mid_level(opts)


def fm(rng, n, length, opts) -> np.ndarray:
    """Wideband FM of the audio (GNU Radio wfm_tx-like: 75 kHz deviation, pre-emphasis)."""
    audio = Audio.draw(rng, n, length, opts)
    phase = audio.fm_phase(float(opts["fm_deviation_hz"]), float(opts["sample_rate_hz"]),
                           float(opts["fm_preemphasis_us"]) * 1e-6)
    phase += rng.uniform(0, 2 * np.pi, size=(n, 1))
    return np.exp(1j * phase)


# --------------------------------------------------------------------------------------------
# Catalogue: class name -> modulator
# --------------------------------------------------------------------------------------------

Modulator = Callable[[np.random.Generator, int, int, dict], np.ndarray]


def _lin(points: np.ndarray, offset_q: bool = False) -> Modulator:
    return lambda rng, n, length, opts: linear(rng, n, length, opts, points=points,
                                               offset_q=offset_q)


def _gfsk(rng, n, length, opts):
    # GNU Radio gfsk_mod: ``sensitivity`` is radians per sample per unit frequency, so one
    # symbol advances the phase by sensitivity * sps (h = sensitivity * sps / pi).
    return cpm(rng, n, length, opts, levels=2,
               phase_per_symbol=float(opts["gfsk_sensitivity"]) * int(opts["sps"]),
               gaussian_bt=float(opts["gfsk_bt"]))


def _cpfsk(rng, n, length, opts):
    return cpm(rng, n, length, opts, levels=2,
               phase_per_symbol=np.pi * float(opts["cpfsk_index"]))


def _fsk(levels: int) -> Modulator:
    return lambda rng, n, length, opts: cpm(rng, n, length, opts, levels=levels,
                                            phase_per_symbol=np.pi * float(opts["fsk_index"]))


def _msk(rng, n, length, opts):
    return cpm(rng, n, length, opts, levels=2, phase_per_symbol=np.pi / 2)


def _gmsk(rng, n, length, opts):
    return cpm(rng, n, length, opts, levels=2, phase_per_symbol=np.pi / 2,
               gaussian_bt=float(opts["gmsk_bt"]))


CATALOG: dict[str, Modulator] = {
    "OOK": _lin(ook_points()),
    "BPSK": _lin(psk_points(2)),
    "QPSK": _lin(psk_points(4)),
    "OQPSK": _lin(psk_points(4), offset_q=True),
    **{f"{m}PSK": _lin(psk_points(m)) for m in (8, 16, 32)},
    **{f"{m}APSK": _lin(apsk_points(m)) for m in (16, 32, 64, 128)},
    **{f"{m}QAM": _lin(qam_points(m)) for m in (16, 32, 64, 128, 256)},
    **{f"QAM{m}": _lin(qam_points(m)) for m in (16, 64)},  # RML2016 spelling
    **{f"{m}ASK": _lin(pam_points(m)) for m in (4, 8)},
    "PAM4": _lin(pam_points(4)),
    "GFSK": _gfsk,
    "CPFSK": _cpfsk,
    "GMSK": _gmsk,
    "MSK": _msk,
    "2FSK": _fsk(2),
    "4FSK": _fsk(4),
    "WBFM": fm,
    "FM": fm,
    "AM-DSB": lambda rng, n, length, opts: am_dsb(rng, n, length, opts, carrier=True),
    "AM-DSB-WC": lambda rng, n, length, opts: am_dsb(rng, n, length, opts, carrier=True),
    "AM-DSB-SC": lambda rng, n, length, opts: am_dsb(rng, n, length, opts, carrier=False),
    # RML2016's AM-SSB is suppressed-carrier SSB of audio (or zeros with ssb_quirk).
    "AM-SSB": lambda rng, n, length, opts: am_ssb(rng, n, length, opts, carrier=False),
    "AM-SSB-WC": lambda rng, n, length, opts: am_ssb(rng, n, length, opts, carrier=True),
    "AM-SSB-SC": lambda rng, n, length, opts: am_ssb(rng, n, length, opts, carrier=False),
}


def modulate(name: str, rng: np.random.Generator, n: int, length: int, opts: dict) -> np.ndarray:
    """Make ``n`` frames of ``length`` samples of class ``name``: complex128 (n, length)."""
    return CATALOG[name](rng, n, length, opts)
