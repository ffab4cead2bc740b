"""Dataset specifications: the single source of truth for class lists, lengths and SNR grids.

Class names are in the label order of the public files / the authors' code, so that label index
``i`` means the same class in a synthetic stand-in and in the real dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset is, independent of where its samples come from.

    Attributes:
        name: registry key used in configs and on the command line.
        title: human-readable name (stand-ins say so).
        classes: class names in label order.
        length: samples per I/Q vector (each example is float32 of shape (2, length)).
        snrs: the official SNR grid in dB, ascending.
        per_class_snr: official number of frames per (class, SNR) pair.
        official_file: file name of the public release ("" when there is none).
        public: False for datasets whose real release is not publicly documented.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    length: int
    snrs: tuple[int, ...]
    per_class_snr: int
    official_file: str
    public: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)


RML2016 = DatasetSpec(
    name="rml2016",
    title="RML2016.10a",
    classes=("8PSK", "AM-DSB", "AM-SSB", "BPSK", "CPFSK", "GFSK",
             "PAM4", "QAM16", "QAM64", "QPSK", "WBFM"),
    length=128,
    snrs=tuple(range(-20, 19, 2)),
    per_class_snr=1000,
    official_file="RML2016.10a_dict.pkl",
)

RML2018 = DatasetSpec(
    name="rml2018",
    title="RadioML 2018.01A",
    # The classes.txt shipped with the release is known to be wrong; this is the true order.
    classes=("OOK", "4ASK", "8ASK", "BPSK", "QPSK", "8PSK", "16PSK", "32PSK", "16APSK",
             "32APSK", "64APSK", "128APSK", "16QAM", "32QAM", "64QAM", "128QAM", "256QAM",
             "AM-SSB-WC", "AM-SSB-SC", "AM-DSB-WC", "AM-DSB-SC", "FM", "GMSK", "OQPSK"),
    length=1024,
    snrs=tuple(range(-20, 31, 2)),
    per_class_snr=4096,
    official_file="GOLD_XYZ_OSC.0001_1024.hdf5",
)

SIG2019 = DatasetSpec(
    name="sig2019",
    title="Sig2019-12 (synthetic stand-in unless a real file is given)",
    # The real class names are not public. These 12 digital modulations are our stand-in's
    # choice; a real Sig2019-12 file is read by label index, so names only label tables.
    classes=("BPSK", "QPSK", "8PSK", "OQPSK", "16QAM", "32QAM", "64QAM",
             "PAM4", "2FSK", "4FSK", "GFSK", "MSK"),
    length=512,
    snrs=tuple(range(-20, 31, 2)),
    per_class_snr=1500,
    official_file="",
    public=False,
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (RML2016, RML2018, SIG2019)}


def get_spec(name: str) -> DatasetSpec:
    """Return the spec registered under ``name``; unknown names raise a one-line ConfigError."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r}: expected one of {', '.join(sorted(DATASETS))}"
        ) from None
