"""Order-keeping process-pool map that runs in-process for one worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from visionops.core.console import track

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int | str | None) -> int:
    """Turns a `workers` setting ("auto", None or an int >= 1) into a process count."""
    if workers in (None, "auto", 0):
        return max(
            1,
            len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1,
        )
    count = int(workers)
    if count < 1:
        raise ValueError(f"workers must be 'auto' or an integer >= 1, got {workers!r}.")
    return count


def pmap(
    func: Callable[[T], R],
    items: Iterable[T],
    workers: int = 1,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    chunksize: int = 4,
    progress: str | None = None,
) -> Iterator[R]:
    """Maps `func` over `items` in order, across `workers` processes.

    `func` and `initializer` must be module-level (picklable). With one worker
    everything runs in this process, which keeps tracebacks and profiling simple.
    With `progress` (its description), a progress bar counts the results on
    stderr unless `visionops.core.console.quiet()`.
    """
    total = len(items) if hasattr(items, "__len__") else None
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        results = map(func, items)
        yield from track(results, progress, total) if progress else results
        return
    with ProcessPoolExecutor(
        max_workers=workers, initializer=initializer, initargs=initargs
    ) as pool:
        results = pool.map(func, items, chunksize=chunksize)
        yield from track(results, progress, total) if progress else results
