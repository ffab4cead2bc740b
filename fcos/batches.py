"""Mini-batches of a split, fed to a device: from an in-memory array or from a ``SplitRows`` view
of the prepared file, in a given order, optionally prefetched by threads into pinned memory.

``batches`` yields the same tensors whatever the source and the number of threads: batch ``k``
is rows ``order[k * batch_size:(k + 1) * batch_size]`` (or the consecutive rows when ``order``
is None), in that order. Threads only read ahead; they never change what a batch holds, so a
seeded run is the same with and without them.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch


def as_source(x) -> torch.Tensor | object:
    """What batches index: a float32 tensor sharing an in-memory array's data, or the view."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return x


def gather(source, rows: torch.Tensor | slice) -> torch.Tensor:
    """Rows of ``source`` (see ``as_source``) as a float32 CPU tensor, in the order asked."""
    if isinstance(source, torch.Tensor):
        return source[rows]
    index = rows if isinstance(rows, slice) else rows.numpy()
    return torch.from_numpy(np.ascontiguousarray(source[index], dtype=np.float32))


def batches(x, y: np.ndarray | torch.Tensor | None, batch_size: int, device: torch.device, *,
            order: torch.Tensor | None = None, steps: int | None = None, workers: int = 0,
            pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield ``(xb (B, 2, L) float32, yb (B,) int64 or None)`` on ``device``.

    Args:
        x: the signals (array, tensor or ``SplitRows``); y: labels or None.
        order: row order (a permutation tensor); None reads rows consecutively.
        steps: number of batches (default: all of them).
        workers: threads reading batches ahead (0 reads in the caller's thread).
        pin_memory: copy batches to page-locked memory so the transfer to CUDA is asynchronous.
    """
    source = as_source(x)
    labels = None if y is None else torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y,
                                                    dtype=torch.int64)
    n = len(source) if order is None else len(order)
    total = -(-n // batch_size)
    steps = total if steps is None else min(steps, total)

    def load(step: int):
        lo, hi = step * batch_size, min(n, (step + 1) * batch_size)
        rows = slice(lo, hi) if order is None else order[lo:hi]
        xb = gather(source, rows)
        yb = None if labels is None else labels[rows]
        if pin_memory:
            xb = xb.pin_memory()
            yb = None if yb is None else yb.pin_memory()
        return xb, yb

    def to_device(pair):
        xb, yb = pair
        xb = xb.to(device, non_blocking=pin_memory)
        return xb, None if yb is None else yb.to(device, non_blocking=pin_memory)

    if workers <= 0:
        for step in range(steps):
            yield to_device(load(step))
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fcos-batches") as pool:
        pending: deque = deque()
        ahead = 2 * workers
        next_step = 0
        for step in range(steps):
            while next_step < steps and len(pending) < ahead:
                pending.append(pool.submit(load, next_step))
                next_step += 1
            yield to_device(pending.popleft().result())
