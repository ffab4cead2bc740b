"""docs/CONTRACT.md has one entry per module of fcos/, and no entry for a module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_contract_has_one_entry_per_module():
    modules = {module_name(p) for p in (ROOT / "fcos").rglob("*.py")}
    text = (ROOT / "docs" / "CONTRACT.md").read_text()
    entries = re.findall(r"^### `([\w.]+)`$", text, flags=re.M)
    assert len(entries) == len(set(entries)), "a module has two entries"
    assert sorted(modules - set(entries)) == [], "modules without an entry in docs/CONTRACT.md"
    assert sorted(set(entries) - modules) == [], "entries in docs/CONTRACT.md for no module"
    assert {"fcos.api", "fcos.prune.lacd", "fcos.data.prepared"} <= set(entries)
