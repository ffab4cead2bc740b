"""Probe points of any network for LaCD and the layer baselines: its blocks and its stem.

Blocks (what ``model.removable_blocks()`` lists for the built-in models), found from one
recorded forward pass (fcos.prune.dependency.recorder): every module that holds parameters in
its children but none of its own, is called exactly once with one tensor in and one tensor out,
and either is an element of an nn.Sequential / nn.ModuleList (a sequential stage) or adds
tensors in its own forward (a residual block). A candidate containing another candidate is
dropped, so the finest blocks are kept. Order: execution order.

The stem (the reference probe point a_0) is the outermost module, not enclosing the first
block, whose output is the first block's input.

For the built-in models this gives exactly their ``removable_blocks()`` and ``stem_name``
(a test checks). Whether a block may be removed is decided elsewhere, from its shapes
(fcos.prune.blocks: the identity replaces a shape-preserving block; others are kept).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ...errors import ConfigError
from .channels import ADDITIVE, example_frames
from .recorder import is_leaf, record


@dataclass(frozen=True)
class ProbePoints:
    """``blocks`` in depth order and the ``stem`` (None when the first block reads the input)."""

    blocks: tuple[str, ...]
    stem: str | None


def _inside(name: str, outer: str) -> bool:
    return outer == "" or name.startswith(outer + ".")


def find_probe_points(model: nn.Module, length: int) -> ProbePoints:
    """Blocks and stem of ``model`` on I/Q frames (2, ``length``) (see the module docstring)."""
    recording = record(model, example_frames(length))
    containers = {name for name, module in model.named_modules()
                  if isinstance(module, (nn.Sequential, nn.ModuleList))}
    adds_in = {op.context for op in recording.ops
               if op.kind == "function" and op.name in ADDITIVE
               and sum(1 for t in op.inputs if t.dim() > 0) >= 2}
    calls: dict[str, list] = {}
    for call in recording.calls:
        calls.setdefault(call.name, []).append(call)
    candidates = []
    for call in recording.calls:
        name, module = call.name, call.module
        if not name or is_leaf(module) or next(module.parameters(), None) is None:
            continue
        if len(calls[name]) != 1 or len(call.inputs) != 1 or len(call.outputs) != 1:
            continue
        parent = name.rpartition(".")[0]
        if parent in containers or name in adds_in:
            candidates.append(call)
    finest = [c for c in candidates
              if not any(o.name != c.name and _inside(o.name, c.name) for o in candidates)]
    if not finest:
        return ProbePoints((), None)
    first = finest[0]
    source = first.inputs[0]
    stem = None
    for call in recording.calls:
        if not call.name or _inside(first.name, call.name):
            continue
        if any(out is source for out in call.outputs):
            if stem is None or len(call.name.split(".")) < len(stem.split(".")):
                stem = call.name
    return ProbePoints(tuple(c.name for c in finest), stem)


def declared_probe_points(model: nn.Module, blocks, stem) -> ProbePoints:
    """User-given block names and stem, checked to be modules of ``model``."""
    if isinstance(blocks, str) or not all(isinstance(b, str) for b in blocks):
        raise ConfigError(f"blocks={blocks!r}: expected a list of module names")
    modules = dict(model.named_modules())
    for name in list(blocks) + ([stem] if stem is not None else []):
        if name not in modules or not name:
            raise ConfigError(f"blocks/stem: {name!r} is not a module of the model")
    return ProbePoints(tuple(blocks), stem)
