"""Datasets: specifications, sources (synthetic stand-ins and real files), splits, prepared files.

Flow: ``synthesize`` or ``load_source`` -> ``RawDataset`` -> ``prepare_dataset`` (stratified
split, one checksummed HDF5 file) -> ``load_prepared`` -> ``PreparedDataset.split(name)``
(arrays, or a ``SplitRows`` view of the file for a split larger than the memory limit).
"""

from .loaders import load_source
from .prepared import PreparedDataset, load_prepared, prepare_dataset, read_manifest, verify_prepared
from .rawdataset import RawDataset
from .specs import DATASETS, DatasetSpec, get_spec
from .split_rows import SplitRows
from .split import stratified_split
from .synthetic import synthesize

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "PreparedDataset",
    "RawDataset",
    "SplitRows",
    "get_spec",
    "load_prepared",
    "load_source",
    "prepare_dataset",
    "read_manifest",
    "stratified_split",
    "synthesize",
    "verify_prepared",
]
