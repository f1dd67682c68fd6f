"""The service's endpoints, answers and web-page views, read from the tasks.

Each task's `Serving` (`Task.serving`) names its endpoint, its answer model, the
thresholds and parameters it takes and its view; this module turns those into the
request fields, the response models and the `/info` description the service and
its web page use, so that a new task needs no change here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, Field, create_model
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from visionops.engine.task import (
    DEFAULT_CONF,
    DEFAULT_IOU,
    DEFAULT_MAX_DET,
    Serving,
    Task,
    TaskError,
)
from visionops.tasks import available_tasks, get_task

# The service's request fields that several endpoints share (`/render` takes them
# all); a task's `Serving` names the ones its endpoint takes.
THRESHOLDS: dict[str, tuple[Any, Any]] = {
    "conf": (float, Field(DEFAULT_CONF, ge=0.0, le=1.0)),
    "iou": (float, Field(DEFAULT_IOU, gt=0.0, le=1.0)),
    "max_det": (int, Field(DEFAULT_MAX_DET, ge=1, le=1000)),
}
BLUR_FACES: tuple[Any, Any] = (bool, False)
FACES_BLURRED: tuple[Any, Any] = (int, 0)
# A client's tracking session (`Serving.track`, `serving.tracks`); empty: none.
TRACK: tuple[Any, Any] = (str, Field("", pattern=r"^[A-Za-z0-9_-]{0,64}$"))
# Where the service mounts its web page, and where the page loads a task's view.
UI = "/ui"
VIEW_ROUTE = "/views/{task}.js"


def served_tasks() -> list[Task]:
    """The registered tasks that have an endpoint, in registry order."""
    return [t for t in map(get_task, available_tasks()) if t.serving() is not None]


def serving_of(task: Task) -> Serving:
    """The task's `Serving`.

    Raises:
        TaskError: The task has no endpoint.
    """
    serving = task.serving()
    if serving is None:
        raise TaskError(f"The {task.name} task has no endpoint yet.")
    return serving


def request_fields(task: Task, batch: bool = False) -> dict[str, Any]:
    """The endpoint's request fields besides its image(s): name -> (type, default).

    Args:
        task: The served task: its `thresholds` and its serving declaration.
        batch: For `/<endpoint>_batch`, which does not blur faces nor track.
    """
    serving = serving_of(task)
    fields = {name: THRESHOLDS[name] for name in task.thresholds}
    if serving.blur_faces and not batch:
        fields["blur_faces"] = BLUR_FACES
    if serving.track and not batch:
        fields["track"] = TRACK
    return {**fields, **serving.parameters}


def render_fields() -> dict[str, Any]:
    """`/render`'s request fields: every threshold, and blurring faces."""
    return {**THRESHOLDS, "blur_faces": BLUR_FACES}


@cache
def response_model(task_name: str) -> type[BaseModel]:
    """The answer to one image: the task's share (`Serving.response`) and what
    every answer carries (the image's size, the model, the timings)."""
    serving = serving_of(get_task(task_name))
    extra = {"faces_blurred": FACES_BLURRED} if serving.blur_faces else {}
    return create_model(  # type: ignore[call-overload]
        f"{serving.endpoint.title()}Response",
        __base__=serving.response,
        __module__=__name__,
        __doc__=f"What `/{serving.endpoint}` answers for one image.",
        image=(dict[str, int], ...),
        model=(dict[str, str], ...),
        **extra,
        timing_ms=(dict[str, float], ...),
    )


def describe(task: Task) -> dict[str, Any]:
    """What `/info` says of the served task: its endpoint, the request fields the
    web page may send it, and the web page's view of its answers."""
    serving = serving_of(task)
    return {
        "task": task.name,
        "endpoint": f"/{serving.endpoint}",
        "parameters": list(request_fields(task)),
        "view": UI + VIEW_ROUTE.format(task=task.name),
    }


def view(request: Request) -> Response:
    """A task's view, the JavaScript module at `/ui/views/<task>.js`."""
    name = request.path_params["task"]
    tasks = {task.name: task for task in served_tasks()}
    if name not in tasks:
        return JSONResponse({"error": f"No view {name!r}."}, status_code=404)
    return FileResponse(serving_of(tasks[name]).view, media_type="text/javascript")
