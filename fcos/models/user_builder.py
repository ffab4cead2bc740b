"""A user's own model builder, named ``path/to/file.py:function``: loading it, calling it, and
the record a checkpoint keeps so the model rebuilds later without the user naming it again.

Loading the file *executes it* (it is imported as a Python module): this is meant for the
user's own code, exactly as ``python file.py`` would be; never point it at a file you do not trust.

The builder is called with keyword arguments only: the given ``args``, plus ``num_classes`` and
``length`` from the dataset when the function takes parameters of those names and ``args`` does
not set them. It must return an ``nn.Module`` mapping (B, 2, L) I/Q frames to (B, num_classes)
logits. The record (:func:`builder_record`) holds the file (absolute path), the function, the
complete arguments and the file's SHA-256; :func:`build_from_record` refuses a file that changed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..errors import CheckpointError, ConfigError


@dataclass(frozen=True)
class UserBuilder:
    """``function`` in the Python file ``file``, called with ``args``."""

    file: Path
    function: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> str:
        return f"{self.file}:{self.function}"


def parse_builder_spec(spec: str, args: Mapping[str, Any] | str | None = None,
                       base_dir: str | Path | None = None, key: str = "--model-file") -> UserBuilder:
    """``"file.py:function"`` (a relative file is taken under ``base_dir``, default the current
    directory) and its arguments (a mapping or a JSON object text) as a UserBuilder. ConfigError
    (one line naming ``key``) for a spec without a colon, a missing file or arguments that are
    not a JSON object."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"{key} {spec!r}: expected FILE.py:FUNCTION (e.g. my_models.py:build)")
    file_text, _, function = spec.rpartition(":")
    if not file_text or not function.isidentifier():
        raise ConfigError(f"{key} {spec!r}: expected FILE.py:FUNCTION with a Python function name")
    path = Path(file_text).expanduser()
    if not path.is_absolute():
        path = Path(base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"{key} {spec!r}: file {path} not found")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError as err:
            raise ConfigError(f"model arguments {args!r}: not valid JSON ({err.msg})") from None
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigError(f"model arguments {args!r}: expected a JSON object of keyword arguments")
    return UserBuilder(path, function, dict(args))


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _load_function(builder: UserBuilder):
    """Import the builder's file (runs the user's code) and return its function."""
    name = f"fcos_user_model_{hashlib.sha256(str(builder.file).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(name, builder.file)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"{builder.file}: not a Python file that can be imported")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses/pickling inside the file look their module up
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the user's file fails to import: report it in one line
        del sys.modules[name]
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(f"{builder.file}: importing it failed ({type(err).__name__}: {first})") from None
    function = getattr(module, builder.function, None)
    if function is None or not callable(function):
        raise ConfigError(f"{builder.spec}: {builder.file.name} defines no function {builder.function!r}")
    return function


def complete_args(builder: UserBuilder, num_classes: int | None, length: int | None) -> UserBuilder:
    """The builder with ``num_classes``/``length`` added to its arguments where its function
    takes parameters of those names and they are not given."""
    parameters = inspect.signature(_load_function(builder)).parameters
    args = dict(builder.args)
    for key, value in (("num_classes", num_classes), ("length", length)):
        if value is not None and key in parameters and key not in args:
            args[key] = int(value)
    return UserBuilder(builder.file, builder.function, args)


def build_user_model(builder: UserBuilder) -> nn.Module:
    """Call the builder; ConfigError (one line) for arguments it does not take, an exception
    inside it, or a result that is not an nn.Module."""
    function = _load_function(builder)
    try:
        inspect.signature(function).bind(**builder.args)
    except TypeError as err:
        raise ConfigError(f"{builder.spec}: wrong arguments {json.dumps(builder.args, sort_keys=True)} "
                          f"({err})") from None
    try:
        model = function(**builder.args)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ConfigError(f"{builder.spec}: the builder failed ({type(err).__name__}: {first})") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{builder.spec}: returned {type(model).__name__}, expected a torch nn.Module")
    return model


def builder_record(builder: UserBuilder) -> dict[str, Any]:
    """What a checkpoint stores to rebuild the model: file, function, args, file SHA-256."""
    return {"file": str(builder.file), "function": builder.function, "args": dict(builder.args),
            "sha256": file_sha256(builder.file)}


def build_from_record(record: Mapping[str, Any], where: str) -> nn.Module:
    """The user's base model rebuilt from a checkpoint's builder record. CheckpointError (one
    line naming ``where``) when the file is gone or its contents changed since the record."""
    if not isinstance(record, Mapping) or not {"file", "function", "args", "sha256"} <= set(record):
        raise CheckpointError(f"{where}: builder record needs file, function, args and sha256")
    path = Path(record["file"])
    if not path.is_file():
        raise CheckpointError(f"{where}: the model's builder file {path} is gone "
                              f"(restore it, or run fcos prune with --model-file FILE:{record['function']})")
    if file_sha256(path) != record["sha256"]:
        raise CheckpointError(f"{where}: the builder file {path} changed since this checkpoint was written "
                              f"(sha256 differs); restore it, or run fcos prune with --model-file to use the new one")
    return build_user_model(UserBuilder(path, str(record["function"]), dict(record["args"])))
