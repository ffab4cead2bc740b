"""The seeded synthetic stand-ins: layout, determinism, options, SNR, spectra and class shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fcos.data import channel as ch
from fcos.data.modulators import CATALOG, draw_symbols, qam_points, rrc_taps
from fcos.data.rawdataset import RawDataset
from fcos.data.specs import DATASETS, get_spec
from fcos.data.synthetic import DEFAULTS, resolve_options, synthesize
from fcos.errors import ConfigError, DataError


def complex_frames(raw: RawDataset, class_name: str, snr: int | None = None) -> np.ndarray:
    """Frames of one class (and SNR) as complex (n, L)."""
    keep = raw.y == raw.spec.classes.index(class_name)
    if snr is not None:
        keep &= raw.snr == snr
    x = raw.x[keep].astype(np.float64)
    return x[:, 0] + 1j * x[:, 1]


# Channel off, raw amplitudes: what the modulator sent plus AWGN.
CLEAN = {"channel": False, "normalization": "none"}


# --- layout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DATASETS))
def test_layout_dtypes_and_order(name):
    spec = get_spec(name)
    raw = synthesize(name, per_class_snr=2, seed=0, snrs=[10, -4])
    n = spec.num_classes * 2 * 2
    assert isinstance(raw, RawDataset) and raw.spec is spec and raw.source == "synthetic"
    assert raw.x.shape == (n, 2, spec.length) and raw.x.dtype == np.float32
    assert raw.y.dtype == np.int64 and raw.snr.dtype == np.int16
    # Ordered by class, then SNR (ascending), then frame.
    assert raw.y.tolist() == [c for c in range(spec.num_classes) for _ in range(4)]
    assert raw.snr.tolist() == [-4, -4, 10, 10] * spec.num_classes
    assert np.isfinite(raw.x).all()
    json.dumps(raw.info)  # manifest-ready
    assert raw.info["options"] == resolve_options(name)
    assert raw.info["snrs"] == [-4, 10] and raw.info["stand_in"] is True
    assert raw.validate() is raw


def test_default_grid_and_sig2019_stand_in_note():
    raw = synthesize("sig2019", per_class_snr=1, seed=0)
    assert sorted(set(raw.snr.tolist())) == list(get_spec("sig2019").snrs)
    assert "stand-in" in raw.info["note"] and raw.warnings


def test_catalog_and_defaults_cover_every_dataset():
    for name, spec in DATASETS.items():
        assert set(spec.classes) <= set(CATALOG), name
        assert set(DEFAULTS[name]) == set(DEFAULTS["rml2016"])
        json.dumps(DEFAULTS[name])


# --- determinism ------------------------------------------------------------------------------

def test_same_seed_same_bytes_other_seed_differs():
    a = synthesize("rml2016", 3, seed=5, snrs=[0, 18])
    b = synthesize("rml2016", 3, seed=5, snrs=[0, 18])
    c = synthesize("rml2016", 3, seed=6, snrs=[0, 18])
    assert a.x.tobytes() == b.x.tobytes()
    assert a.y.tobytes() == b.y.tobytes() and a.snr.tobytes() == b.snr.tobytes()
    assert not np.array_equal(a.x, c.x)


def test_snr_subset_reproduces_the_same_frames():
    full = synthesize("rml2016", 2, seed=1, snrs=[-2, 6, 12])
    part = synthesize("rml2016", 2, seed=1, snrs=[6])
    np.testing.assert_array_equal(part.x, full.x[full.snr == 6])


# --- options ----------------------------------------------------------------------------------

def test_unknown_option_names_the_key():
    with pytest.raises(ConfigError, match="'snr_convension'") as err:
        synthesize("rml2016", 1, 0, snr_convension="true")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key, value", [
    ("snr_convention", "exact"), ("normalization", "l2"), ("rolloff", 1.5), ("sps", 0),
    ("sps", 8.5), ("ssb_quirk", "yes"), ("multipath_delays", [0, 9.0]),
    ("multipath_mags", [1.0, 0.5]), ("audio_level_db", [-10, -30]), ("doppler_hz", -1), ("doppler_hz", 1e5),
    ("sro_max_hz", 1e6), ("rician_k", float("nan")), ("symbol_source", "book"),
])
def test_bad_option_value_names_the_key(key, value):
    with pytest.raises(ConfigError, match=repr(key)):
        synthesize("rml2016", 1, 0, snrs=[0], **{key: value})


@pytest.mark.parametrize("kwargs, word", [
    ({"per_class_snr": 0}, "per_class_snr"), ({"seed": -1}, "seed"),
    ({"snrs": []}, "snrs"), ({"snrs": [0, 0]}, "snrs"), ({"snrs": [0.5]}, "snrs"),
    ({"snrs": [500]}, "snrs"), ({"snrs": "10"}, "snrs"),
])
def test_bad_arguments(kwargs, word):
    args = {"per_class_snr": 1, "seed": 0, "snrs": [0]} | kwargs
    with pytest.raises(ConfigError, match=word):
        synthesize("rml2016", **args)


def test_unknown_dataset():
    with pytest.raises(ConfigError, match="rml1999"):
        synthesize("rml1999", 1, 0)


def test_options_are_recorded_and_override_defaults():
    raw = synthesize("rml2016", 1, 0, snrs=[0], rician_k=2.0, multipath_delays=[0, 1],
                     multipath_mags=[1, 0.5])
    opts = raw.info["options"]
    assert opts["rician_k"] == 2.0 and opts["multipath_delays"] == [0.0, 1.0]
    assert DEFAULTS["rml2016"]["rician_k"] == 4.0  # defaults untouched


# --- normalisation ----------------------------------------------------------------------------

def test_rml2016_vectors_are_l1_normalised():
    raw = synthesize("rml2016", 3, 0, snrs=[-20, 0, 18])
    l1 = np.abs(raw.x[:, 0].astype(np.float64) + 1j * raw.x[:, 1]).sum(axis=1)
    np.testing.assert_allclose(l1, 1.0, rtol=1e-5)


def test_rml2018_vectors_have_unit_power():
    raw = synthesize("rml2018", 1, 0, snrs=[-10, 20])
    power = (raw.x.astype(np.float64) ** 2).sum(axis=1).mean(axis=1)
    np.testing.assert_allclose(power, 1.0, rtol=1e-4)


# --- SNR --------------------------------------------------------------------------------------

@pytest.mark.parametrize("reference", ["frame", "batch"])
@pytest.mark.parametrize("snr", [-10, 0, 10, 18])
def test_true_snr_convention_matches_label(snr, reference):
    # CPFSK has |s| = 1 exactly with the channel off, so E|x|^2 - 1 is the noise power.
    raw = synthesize("rml2016", 150, 0, snrs=[snr], snr_reference=reference, **CLEAN)
    x = complex_frames(raw, "CPFSK")
    noise = np.mean(np.abs(x) ** 2) - 1.0
    assert abs(10 * np.log10(1.0 / noise) - snr) < 1.0


@pytest.mark.parametrize("snr", [-4, 2, 8])
def test_gnuradio_convention_reproduces_the_quirk(snr):
    raw = synthesize("rml2016", 150, 0, snrs=[snr], snr_convention="gnuradio", **CLEAN)
    x = complex_frames(raw, "CPFSK")
    noise = np.mean(np.abs(x) ** 2) - 1.0
    # Noise amplitude 10^(-snr/10) against unit power: the true SNR is twice the label.
    assert abs(10 * np.log10(1.0 / noise) - 2 * snr) < 1.0


@pytest.mark.parametrize("reference", ["frame", "batch"])
def test_true_snr_with_channel_on_for_a_non_constant_envelope_class(reference):
    # QAM16 through fading and multipath, raw amplitudes.
    raw = synthesize("rml2016", 300, 0, snrs=[6], normalization="none", snr_reference=reference)
    x = complex_frames(raw, "QAM16")
    # Noise is white; the signal is band-limited to (1+0.35)/8 of Fs, so the spectrum far from
    # the carrier (|f| > 0.2) holds only noise, at the full-band noise density.
    spec = np.mean(np.abs(np.fft.fft(x, axis=1)) ** 2, axis=0) / x.shape[1]
    f = np.fft.fftfreq(x.shape[1])
    noise = np.mean(spec[np.abs(f) > 0.2])
    signal = np.mean(np.abs(x) ** 2) - noise
    assert abs(10 * np.log10(signal / noise) - 6) < 1.0


def test_ssb_quirk_makes_am_ssb_noise_only():
    def lag1(x):  # mean normalised lag-1 autocorrelation magnitude per frame
        r = np.abs(np.sum(x[:, 1:] * np.conj(x[:, :-1]), axis=1))
        return float(np.mean(r / np.sum(np.abs(x) ** 2, axis=1)))

    quirk = complex_frames(synthesize("rml2016", 100, 0, snrs=[18], ssb_quirk=True), "AM-SSB")
    plain = complex_frames(synthesize("rml2016", 100, 0, snrs=[18]), "AM-SSB")
    assert lag1(quirk) < 0.15  # white noise
    assert lag1(plain) > 0.5  # band-limited audio (oversampled ~25x) dominates
    assert np.isfinite(quirk).all()


# --- spectra and class shapes -----------------------------------------------------------------

def test_rrc_bpsk_occupies_its_nyquist_band():
    raw = synthesize("rml2016", 200, 0, snrs=[100], symbol_source="random", **CLEAN)
    x = complex_frames(raw, "BPSK")
    psd = np.mean(np.abs(np.fft.fft(x * np.hanning(x.shape[1]), axis=1)) ** 2, axis=0)
    f = np.abs(np.fft.fftfreq(x.shape[1]))
    sps, beta = 8, 0.35
    occupied = psd[f <= (1 + beta) / (2 * sps) + 1 / x.shape[1]].sum() / psd.sum()
    inner = psd[f <= 1 / (2 * sps)].sum() / psd.sum()
    flat = psd[f < (1 - beta) / (2 * sps)].sum() / psd.sum()
    assert occupied > 0.98
    # Raised-cosine power spectrum: a fraction (1 - beta) + beta/2 + beta/pi = 0.94 lies within
    # 1/(2T), and only the flat part (1 - beta) = 0.65 (plus window leakage) within (1-beta)/(2T).
    assert 0.90 < inner < 0.98
    assert 0.6 < flat < 0.8


def _matched_symbols(x: np.ndarray, sps: int = 8, span: int = 10) -> np.ndarray:
    """Matched-filter and sample at symbol peaks (channel off, window offset 0)."""
    h = rrc_taps(sps, 0.35, span)
    half = span * sps // 2
    y = np.stack([np.convolve(row, h, mode="full") for row in x])  # few frames: test only
    # Window sample j is burst sample GUARD + j; symbol peaks are at burst samples k % sps == 0.
    first = (-ch.GUARD) % sps
    peaks = [j for j in range(first, x.shape[1], sps) if half <= j < x.shape[1] - half]
    return y[:, [j + half for j in peaks]].ravel() / np.sqrt(sps)


def test_constellations_after_matched_filter():
    raw = synthesize("rml2016", 40, 0, snrs=[100], window_offset_max=0, symbol_source="random",
                     **CLEAN)
    psk = _matched_symbols(complex_frames(raw, "8PSK"))
    assert np.allclose(np.abs(psk), 1.0, atol=0.08)  # one ring
    assert np.unique(np.round(np.angle(psk) / (np.pi / 4)) % 8).size == 8
    qam = np.abs(_matched_symbols(complex_frames(raw, "QAM16")))
    rings = np.unique(np.round(np.abs(qam_points(16)), 3))
    assert rings.size == 3
    nearest = np.abs(qam[:, None] - rings[None, :])
    assert nearest.min(axis=1).max() < 0.1  # every sample on one of the three rings
    assert set(nearest.argmin(axis=1).tolist()) == {0, 1, 2}
    pam = _matched_symbols(complex_frames(raw, "PAM4"))
    assert np.abs(pam.imag).max() < 0.05  # real-axis constellation


def test_envelopes_differ_between_families():
    raw = synthesize("rml2016", 50, 0, snrs=[100], **CLEAN)
    for name in ("CPFSK", "GFSK", "WBFM"):  # frequency modulations: constant envelope
        assert np.allclose(np.abs(complex_frames(raw, name)), 1.0, atol=1e-4), name
    for name in ("QAM16", "8PSK", "BPSK"):  # RRC-shaped linear modulations: envelope varies
        env = np.abs(complex_frames(raw, name))
        assert np.std(env) / np.mean(env) > 0.2, name
    am = complex_frames(raw, "AM-DSB")
    assert np.abs(am.imag).max() < 1e-3 and (am.real > 0).mean() > 0.99  # carrier + audio
    bpsk = complex_frames(raw, "BPSK")
    assert np.abs(bpsk.imag).max() < 1e-3  # real baseband before the channel


def test_channel_rotates_and_fades():
    raw = synthesize("rml2016", 50, 0, snrs=[100], normalization="none")
    x = complex_frames(raw, "BPSK")
    # Fading gives each frame its own phase: BPSK is no longer on the real axis.
    assert np.mean(np.abs(x.imag)) > 0.2 * np.mean(np.abs(x.real))
    power = np.mean(np.abs(x) ** 2, axis=1)
    assert power.std() / power.mean() > 0.1  # per-frame gains differ


def test_text_symbols_are_skewed_random_symbols_are_not():
    rng = np.random.default_rng(0)
    text = draw_symbols(rng, 200, 64, 16, {"symbol_source": "text"})
    rand = draw_symbols(rng, 200, 64, 16, {"symbol_source": "random"})
    for sym in (text, rand):
        assert sym.shape == (200, 64) and sym.min() >= 0 and sym.max() < 16
    count_text = np.bincount(text.ravel(), minlength=16)
    count_rand = np.bincount(rand.ravel(), minlength=16)
    assert count_text.max() > 4 * max(count_text.min(), 1)
    assert count_rand.max() < 1.5 * count_rand.min()


def test_rawdataset_validate_rejects_bad_arrays():
    good = synthesize("rml2016", 1, 0, snrs=[0])
    for field, value, word in [
        ("x", good.x.astype(np.float64), "float32"),
        ("y", good.y.astype(np.int32), "int64"),
        ("snr", good.snr.astype(np.int64), "int16"),
        ("x", good.x[:, :, :64], "shape"),
        ("y", np.full_like(good.y, 11), "labels"),
        ("y", good.y[:-1], "shape"),
    ]:
        bad = RawDataset(**{**good.__dict__, field: value})
        with pytest.raises(DataError, match=word) as err:
            bad.validate()
        assert str(err.value).startswith("synthetic (rml2016)")
    x = good.x.copy()
    x[0, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        RawDataset(**{**good.__dict__, "x": x}).validate()


def test_rician_gains_unit_power_and_doppler():
    rng = np.random.default_rng(0)
    slow = ch.rician_gains(rng, 2000, 3, 128, 4.0, 1.0, 8, 200e3)
    assert slow.shape == (2000, 3, 128)
    assert abs(np.mean(np.abs(slow) ** 2) - 1.0) < 0.05
    assert np.abs(slow[..., -1] - slow[..., 0]).max() < 1e-2  # 1 Hz: static over 0.64 ms
    fast = ch.rician_gains(rng, 200, 3, 128, 4.0, 2000.0, 8, 200e3)
    assert np.abs(fast[..., -1] - fast[..., 0]).mean() > 0.1  # 1.3 Doppler cycles per window
    raw = synthesize("rml2016", 2, 0, snrs=[0], doppler_hz=2000.0)
    assert np.isfinite(raw.x).all()


def test_noise_power_references():
    clean = np.stack([np.full(64, 1.0 + 0j), np.full(64, 2.0 + 0j), np.zeros(64, complex)])
    frame = ch.noise_power(clean, 10, "true", "frame")[:, 0]
    np.testing.assert_allclose(frame, [0.1, 0.4, 0.1])  # silent frame: unit reference
    batch = ch.noise_power(clean, 10, "true", "batch")[:, 0]
    np.testing.assert_allclose(batch, [5 / 3 / 10] * 3)
    gr = ch.noise_power(clean, 10, "gnuradio")[:, 0]
    np.testing.assert_allclose(gr, [0.01] * 3)  # amplitude 10^(-10/10) = 0.1
