"""One source for each name: the config schema's dataset and model lists are the registries'."""

from __future__ import annotations

from pathlib import Path

import yaml

from fcos.data import DATASETS
from fcos.model_entries import NAME_PATTERN
from fcos.models import model_names

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "schema.yaml").read_text())


def test_schema_datasets_are_the_registered_datasets():
    properties = SCHEMA["properties"]
    assert properties["datasets"]["propertyNames"]["enum"] == sorted(DATASETS)
    pair = properties["exclude"]["items"]["properties"]
    assert pair["dataset"]["enum"] == sorted(DATASETS)


def test_schema_models_are_the_registered_models():
    properties = SCHEMA["properties"]
    registry, user = properties["models"]["items"]["oneOf"]
    assert registry["enum"] == sorted(model_names())
    assert user["properties"]["name"]["pattern"] == NAME_PATTERN.pattern
    assert user["required"] == ["name", "model_file"]
