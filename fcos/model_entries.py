"""The workflow config's ``models`` list as model entries: a registry name, or a user's network
``{name, model_file: "FILE.py:FUNCTION", model_args: {...}}`` with its UserBuilder.

Imports neither torch nor the user's file (the workflow reads the config before any job runs):
the builder's function is looked up in the file's syntax tree. Every problem is a ConfigError
of one line naming the config key (``models[2].model_file``) and what was expected.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: The registry's model names (fcos.models.MODELS, which imports torch; tests keep them equal).
REGISTRY_MODELS = ("cnn1d", "resnet56", "signet50")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*$")
_ENTRY_KEYS = {"name", "model_file", "model_args"}


@dataclass(frozen=True)
class ModelEntry:
    """One model of the config: ``builder`` is None for a registry model."""

    name: str
    builder: Any = None  # fcos.models.user_builder.UserBuilder

    @property
    def builder_file(self) -> str | None:
        return None if self.builder is None else str(self.builder.file)


def _defines_function(path: Path, function: str) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function
               for node in tree.body)


def model_entry(item: Any, index: int, base_dir: str | Path) -> ModelEntry:
    """One item of ``models`` (at position ``index``) as a ModelEntry; relative model files are
    taken under ``base_dir`` (the workflow directory)."""
    from .models.user_builder import parse_builder_spec

    key = f"models[{index}]"
    if isinstance(item, str):
        if item not in REGISTRY_MODELS:
            raise ConfigError(f"config key '{key}': unknown model {item!r}; expected one of "
                              f"{', '.join(REGISTRY_MODELS)} or a mapping {{name, model_file, model_args}}")
        return ModelEntry(item)
    if not isinstance(item, dict):
        raise ConfigError(f"config key '{key}': expected a model name or a mapping {{name, model_file, model_args}}")
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise ConfigError(f"config key '{key}.{unknown[0]}': unknown key; expected name, model_file, model_args")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(f"config key '{key}.name': {name!r}; expected a name matching {NAME_PATTERN.pattern}")
    if name in REGISTRY_MODELS:
        raise ConfigError(f"config key '{key}.name': {name!r} is a registry model; expected another name "
                          f"for a user's network")
    if "model_file" not in item:
        raise ConfigError(f"config key '{key}.model_file': missing; expected FILE.py:FUNCTION")
    args = item.get("model_args", {})
    if not isinstance(args, dict):
        raise ConfigError(f"config key '{key}.model_args': expected a mapping of keyword arguments")
    try:
        builder = parse_builder_spec(item["model_file"], args, base_dir=base_dir, key="")
    except ConfigError as err:
        raise ConfigError(f"config key '{key}.model_file': {str(err).strip()}; expected FILE.py:FUNCTION "
                          f"with the file relative to the workflow directory {base_dir} or absolute") from None
    if not _defines_function(builder.file, builder.function):
        raise ConfigError(f"config key '{key}.model_file': {builder.file} defines no top-level function "
                          f"{builder.function!r}; expected FILE.py:FUNCTION naming a function defined in it")
    return ModelEntry(name, builder)


def model_entries(models: Any, base_dir: str | Path) -> list[ModelEntry]:
    """The config's ``models`` list as ModelEntries; duplicate names are refused."""
    if not isinstance(models, list) or not models:
        raise ConfigError("config key 'models': expected a non-empty list")
    entries, seen = [], {}
    for index, item in enumerate(models):
        entry = model_entry(item, index, base_dir)
        if entry.name in seen:
            where = f"models[{index}]" + (".name" if entry.builder is not None else "")
            raise ConfigError(f"config key '{where}': {entry.name!r} repeats models[{seen[entry.name]}]; "
                              f"expected unique model names")
        seen[entry.name] = index
        entries.append(entry)
    return entries


def check_exclude(exclude: Any, names: list[str]) -> None:
    """Every ``exclude`` pair names a model of ``names`` (the config's models): a typo would
    otherwise exclude nothing, silently."""
    for index, pair in enumerate(exclude or []):
        model = pair.get("model") if isinstance(pair, dict) else None
        if model not in names:
            raise ConfigError(f"config key 'exclude[{index}].model': {model!r} is not one of the config's "
                              f"models; expected one of {', '.join(names)}")


def method_applies(chain: dict, entry: ModelEntry) -> bool:
    """Whether a pipeline method (a chain of fcos.prune.chains) runs on a model. A chain's
    ``models`` list restricts registry models only (slimming: the registry models with
    BatchNorm); a user's network gets every method, and one it cannot take (slimming without
    a BatchNorm after each pruned layer) fails at its pruning step with a one-line error."""
    return entry.builder is not None or entry.name in chain.get("models", [entry.name])
