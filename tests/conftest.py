"""Shared fixtures: tiny prepared datasets written by the real prepare step."""

from __future__ import annotations

import pytest
import torch

from fcos.data import load_prepared, prepare_dataset


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # Tests share 2 cores; one intra-op thread keeps timings stable and runs reproducible.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_rml2016(tmp_path_factory):
    """A prepared synthetic RML2016-like file: 11 classes x 20 SNRs x 10 frames."""
    path = tmp_path_factory.mktemp("data") / "rml2016_tiny.h5"
    prepare_dataset("rml2016", "synthetic", path, per_class_snr=10, seed=0, progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_data(tiny_rml2016):
    """``tiny_rml2016`` opened as a PreparedDataset."""
    return load_prepared(tiny_rml2016)


@pytest.fixture(scope="module")
def base_models():
    """Seeded, untrained CNN1D and ResNet56 (11 classes, length 128) in eval mode."""
    from fcos.models import build_model

    models = {}
    for name in ("cnn1d", "resnet56"):
        torch.manual_seed(0)
        models[name] = build_model(name, 11, 128).eval()
    return models
