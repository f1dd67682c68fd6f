"""The tasks registry: a task name to the object that holds what differs per task.

Each task lives in its own package (`detect/`, `classify/`, `segment/`) whose
`__init__` exposes `TASK`, an instance of `visionops.engine.task.Task`. A task is
imported on first use, so a task under construction costs the others nothing.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator

from visionops.engine.task import Task, TaskError

# Task name -> the package whose `TASK` implements it. A new task adds one line.
REGISTRY: dict[str, str] = {
    "detect": "visionops.tasks.detect",
    "classify": "visionops.tasks.classify",
    "segment": "visionops.tasks.segment",
}
TASK_NAMES = tuple(REGISTRY)
DEFAULT_TASK = "detect"


@cache
def get_task(name: str | None = None) -> Task:
    """The task called `name` (`None`: the default, `detect`).

    Raises:
        TaskError: An unknown task, or one not available in this version.
    """
    name = name or DEFAULT_TASK
    if name not in REGISTRY:
        raise TaskError(f"unknown task {name!r}; choose one of {list(REGISTRY)}")
    task = _load(name)
    if task is None:
        raise TaskError(
            f"the {name} task is not available in this version; available: "
            f"{available_tasks()}"
        )
    return task


def _load(name: str) -> Task | None:
    """The `TASK` of a registered task's package, None while it has none."""
    try:
        module = importlib.import_module(REGISTRY[name])
    except ModuleNotFoundError as err:
        if err.name != REGISTRY[name]:
            raise
        return None
    task = getattr(module, "TASK", None)  # a folder of parts is not a task yet
    if task is not None and (not isinstance(task, Task) or task.name != name):
        raise TypeError(f"{REGISTRY[name]}.TASK is not the {name} task")
    return task


def available_tasks() -> list[str]:
    """The registered tasks whose package defines its `TASK`."""
    return [n for n in REGISTRY if _load(n) is not None]


def as_task(value: Any) -> Task:
    """A task object as it is, a task name (`None`: the default) resolved."""
    return value if isinstance(value, Task) else get_task(value)


# A pydantic field holding the task object, stored as its name: step artifacts
# (candidates, results) carry the task itself and read back as the same object.
TaskField = Annotated[
    Task,
    PlainValidator(as_task),
    PlainSerializer(lambda task: task.name, return_type=str),
]


def ingestion_tasks(name: str | None = None) -> list[Task]:
    """The tasks a source may be staged for (`data.sources.stage_source`).

    The task called `name`, or every available task in registry order: the
    first whose `label_kinds` hold what the source found takes the dataset
    (boxes or polygons: detect; class folders: classify; mask images: segment).

    Raises:
        TaskError: An unknown task, or one not available in this version.
    """
    return [get_task(name)] if name else [get_task(n) for n in available_tasks()]


__all__ = [
    "DEFAULT_TASK",
    "REGISTRY",
    "TASK_NAMES",
    "Task",
    "TaskError",
    "TaskField",
    "as_task",
    "available_tasks",
    "get_task",
    "ingestion_tasks",
]
