"""Checking a configuration against its JSON schema, reporting the first problem in one line.

jsonschema's own message for a failed check quotes the whole (sub)schema, which for the workflow
config is hundreds of lines; a user needs the key and what was expected.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import yaml


def _key(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


#: Config keys of earlier versions and their names now (refused, never read silently).
RENAMED_KEYS = {"method_options": "pruner_options"}


def refuse_config(problem: str) -> None:
    """End the program as bad input does: ``problem`` (one line naming the key) on stderr, exit
    code 2. For callers that read a config before any work (the workflow's Snakefile)."""
    print(problem, file=sys.stderr)
    raise SystemExit(2)


def schema_problem(config: Any, schema_path: str | os.PathLike) -> str | None:
    """None when ``config`` satisfies the schema in ``schema_path`` (YAML or JSON), else one line:
    ``config key 'a.b': <what is wrong>`` for the most relevant error."""
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    if isinstance(config, dict):
        for old, new in RENAMED_KEYS.items():
            if old in config:
                return f"config key '{old}': renamed to '{new}' (same contents); rename it in your config"
    with open(schema_path, encoding="utf-8") as handle:
        schema = yaml.safe_load(handle)
    validator = validators.validator_for(schema)(schema)
    error = best_match(validator.iter_errors(config))
    if error is None:
        return None
    while error.validator in ("oneOf", "anyOf") and error.context:
        # "not valid under any of the given schemas" says nothing: name what the alternative of
        # the value's own kind expected (a name not in the enum, a mapping's bad key, ...)
        relevant = [e for e in error.context if e.validator != "type"]
        if not relevant:
            break
        error = best_match(relevant)
    message = " ".join(error.message.split())
    return f"config key '{_key(error.absolute_path)}': {message}"
