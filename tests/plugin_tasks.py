"""The toy tasks of `tests/plugins/`, registered as a user adds a task.

Each folder there is a task package (`<name>_task`, its `__init__` exposing
`TASK`) outside the project; a task is registered by one line in
`visionops.tasks.REGISTRY`, with its folder's parent on `sys.path`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from visionops.engine.task import Task

PLUGINS = Path(__file__).with_name("plugins")


@contextmanager
def registered(name: str) -> Iterator[Task]:
    """Registers the toy task `name` (`tests/plugins/<name>_task`) while open."""
    from visionops.tasks import REGISTRY, get_task

    patch = pytest.MonkeyPatch()
    patch.syspath_prepend(str(PLUGINS))
    patch.setitem(REGISTRY, name, f"{name}_task")
    get_task.cache_clear()
    try:
        yield get_task(name)
    finally:
        patch.undo()
        get_task.cache_clear()
