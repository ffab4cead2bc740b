"""Recording what a network does to its tensors on one example input.

The network is run once, for real, in eval mode without gradients, under a
``torch.overrides.TorchFunctionMode`` and with forward hooks on every module. Running it (rather
than symbolic tracing with torch.fx) sees through Python control flow and shape checks in
``forward`` (CNN1D's 2-D stack checks its pooled height, which torch.fx cannot trace), and still
records every tensor operation: what the analysis cannot follow is refused by it, by name.

Two kinds of :class:`Op` are recorded, in execution order:

- ``"module"``: a call of a *leaf* module, one without children that holds parameters or
  buffers of its own (Conv, Linear, BatchNorm, LSTM/GRU, ResNet56's channel map, SigNet50's
  S2M ...), or one with a ``count_macs`` method; nothing inside it is recorded;
- ``"function"``: any other torch function or Tensor method called outside leaf modules
  (``F.relu``, ``torch.cat``, ``Tensor.view``, ``+`` ...), with the dotted name of the
  innermost module it was called in (``context``), for error messages.

Modules without parameters (nn.ReLU, nn.MaxPool1d, nn.Dropout, nn.Sequential, a user's
residual block ...) are looked through: their functional calls are recorded. Tensors are
identified by object identity; every recorded tensor is kept alive until the recording is
dropped, so identities are not reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from ...errors import ConfigError
from ..modes import eval_mode


@dataclass
class Op:
    """One recorded call. ``inputs``: the tensors among its arguments (depth-first order);
    ``args``/``kwargs``: the arguments as given; ``outputs``: the tensors it returned."""

    index: int
    kind: str  # "module" | "function"
    name: str  # module: dotted module name; function: the function's name ("relu", "cat")
    context: str  # dotted name of the module the call happened in ("" for the model itself)
    args: tuple
    kwargs: dict
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    module: nn.Module | None = None
    func: Any = None


@dataclass
class ModuleCall:
    """One call of any module (leaf or not), in the order calls *returned* (inner first)."""

    name: str
    module: nn.Module
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]


@dataclass
class Recording:
    """Ops in execution order, every module call, the example input and the model's outputs."""

    ops: list[Op]
    calls: list[ModuleCall]
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    keep_alive: list[Any] = field(default_factory=list, repr=False)


def is_leaf(module: nn.Module) -> bool:
    """A module recorded as one op: its own MAC rule, or own parameters/buffers and no
    children. (A module with children *and* own parameters, e.g. a model multiplying by its
    own matrix, is looked through, so what it does with those parameters is seen and refused.)"""
    if callable(getattr(module, "count_macs", None)):
        return True
    own = (next(module.parameters(recurse=False), None) is not None
           or next(module.buffers(recurse=False), None) is not None)
    return own and next(module.children(), None) is None


def _tensors(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _function_name(func: Any) -> str:
    return getattr(func, "__name__", None) or type(func).__name__


class _Mode(TorchFunctionMode):
    def __init__(self, recorder: "_Recorder"):
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        self.recorder.function(func, args, kwargs, result)
        return result


class _Recorder:
    def __init__(self, model: nn.Module):
        self.names = {module: name for name, module in model.named_modules()}
        self.stack: list[str] = []
        self.leaf_depth = 0
        self.ops: list[Op] = []
        self.calls: list[ModuleCall] = []
        self.keep: list[Any] = []

    def _add(self, **fields) -> None:
        self.keep.append((fields["inputs"], fields["outputs"]))
        self.ops.append(Op(index=len(self.ops), **fields))

    def function(self, func, args, kwargs, result) -> None:
        if self.leaf_depth:
            return
        outputs = _tensors(result)
        inputs = _tensors((args, kwargs))
        if not inputs and not outputs:
            return
        self._add(kind="function", name=_function_name(func), context=self.context,
                  args=args, kwargs=kwargs, inputs=inputs, outputs=outputs, func=func)

    @property
    def context(self) -> str:
        return self.stack[-1] if self.stack else ""

    def pre_hook(self, module, args, kwargs):
        name = self.names.get(module, "?")
        self.stack.append(name)
        if is_leaf(module):
            self.leaf_depth += 1

    def post_hook(self, module, args, kwargs, result):
        name = self.stack.pop()
        if not self.leaf_depth or (self.leaf_depth == 1 and is_leaf(module)):
            call = ModuleCall(name, module, _tensors((args, kwargs)), _tensors(result))
            self.keep.append((call.inputs, call.outputs))
            self.calls.append(call)
        if is_leaf(module):
            self.leaf_depth -= 1
            if not self.leaf_depth:
                self._add(kind="module", name=name, context=self.context, args=args,
                          kwargs=kwargs, inputs=_tensors((args, kwargs)),
                          outputs=_tensors(result), module=module)


def record(model: nn.Module, example_input: torch.Tensor) -> Recording:
    """Run ``model`` once on ``example_input`` (eval mode, no grad) and record its ops.

    Every module's train/eval flag is restored afterwards and the hooks are removed. Raises
    ConfigError (naming the model's error) when the forward pass itself fails.
    """
    recorder = _Recorder(model)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(recorder.pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(recorder.post_hook, with_kwargs=True))
    try:
        with eval_mode(model), torch.no_grad(), _Mode(recorder):
            output = model(example_input)
    except ConfigError:
        raise
    except Exception as err:  # the user's forward failed: say so in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"channel groups: the model's forward pass failed on the example input "
                          f"of shape {tuple(example_input.shape)} ({type(err).__name__}: {first})"
                          ) from None
    finally:
        for handle in handles:
            handle.remove()
    outputs = _tensors(output)
    return Recording(recorder.ops, recorder.calls, [example_input], outputs,
                     keep_alive=[recorder.keep, output])
