"""Batch inference: the champion ONNX model over a folder, predictions as files."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from visionops.data.manifest import IMAGE_SUFFIXES
from visionops.data.report import draw_boxes
from visionops.fsutil import ensure_empty_dir
from visionops.inference import Detections, OnnxDetector
from visionops.parallel import resolve_workers

# Image formats OpenCV may not decode: tried anyway, reported as unsupported if not.
UNSUPPORTED_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".jp2", ".ico", ".svg")
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".jfif", ".jpe", *UNSUPPORTED_SUFFIXES)
DATASET_PREFIX = "dataset:"
DATASET_SPLITS = ("train", "val", "test")

LABELS_DIR = "labels"
PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"
BAD_FILES_CSV = "bad_files.csv"
SAMPLE_GRID = "sample_grid.jpg"
SUMMARY_JSON = "summary.json"
CSV_COLUMNS = ("image", "class_id", "class_name", "confidence", "x1", "y1", "x2", "y2")

_CELL = 240  # side of one sample-grid thumbnail, pixels
_CAPTION = 18  # caption strip under each thumbnail, pixels
_JPEG_EOI = b"\xff\xd9"


class BatchSettings(BaseModel):
    """How the detector runs over a folder.

    Attributes:
        conf: Keep boxes scoring above this.
        iou: NMS IoU threshold.
        max_det: Keep at most this many boxes per image.
        batch: Images decoded and sent to ONNX Runtime together.
        threads: ONNX Runtime intra-op threads (`auto`: one per CPU core); as many
            threads decode the next batch meanwhile.
        device: `auto` uses ONNX Runtime's CUDA provider when it is installed.
        grid_size: Images in the annotated sample grid (0: none).
    """

    model_config = ConfigDict(extra="forbid")

    conf: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.7, gt=0.0, le=1.0)
    max_det: int = Field(300, ge=1)
    batch: int = Field(8, ge=1, le=1024)
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grid_size: int = Field(16, ge=0, le=100)


@dataclass
class PredictionSet:
    """A batch run's output directory: labels/, predictions, bad files, grid."""

    root: Path

    @property
    def summary(self) -> dict[str, Any]:
        """The run's headline figures, read from `summary.json`."""
        return json.loads((self.root / SUMMARY_JSON).read_text())

    @property
    def grid(self) -> Path | None:
        """The annotated sample grid, if one was drawn."""
        path = self.root / SAMPLE_GRID
        return path if path.is_file() else None


@dataclass
class Inputs:
    """What a folder holds: files to predict, and files ignored by their suffix."""

    files: list[Path]
    ignored: dict[str, int]


@dataclass
class _Read:
    path: Path
    image: np.ndarray | None
    reason: str = ""
    detail: str = ""


# --- sources and inputs ----------------------------------------------------------


def dataset_split(source: str) -> str | None:
    """The split of a `dataset:<split>` source (`valid` means val), else None.

    Raises:
        ValueError: For `dataset:` with an unknown split.
    """
    if not source.startswith(DATASET_PREFIX):
        return None
    split = source.removeprefix(DATASET_PREFIX).strip().lower()
    split = {"valid": "val", "validation": "val"}.get(split, split)
    if split not in DATASET_SPLITS:
        raise ValueError(
            f"{source!r}: use dataset:train, dataset:val or dataset:test "
            "(a split of the dataset version)"
        )
    return split


def list_inputs(folder: Path) -> Inputs:
    """Lists the files to predict under `folder`, recursively, sorted.

    Files with an image suffix are inputs, decodable or not (a bad one is
    reported, never skipped). Other files (labels, yaml, notes) are counted by
    suffix; hidden files and folders are left out.

    Raises:
        NotADirectoryError: If `folder` is not a directory.
    """
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    files: list[Path] = []
    ignored: Counter[str] = Counter()
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() in INPUT_SUFFIXES:
            files.append(path)
        else:
            ignored[path.suffix.lower() or "(none)"] += 1
    return Inputs(files, dict(sorted(ignored.items())))


def read_image(path: Path) -> tuple[np.ndarray | None, str, str]:
    """Decodes an image as BGR uint8, the way Ultralytics reads it.

    Returns:
        The image (None when bad), and for a bad file its reason (`zero_byte`,
        `unreadable`, `truncated`, `unsupported_format`) and a detail.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        return None, "unreadable", f"{type(err).__name__}: {err}"
    if not data:
        return None, "zero_byte", "the file is empty"
    if data[:2] == b"\xff\xd8" and not data.endswith(_JPEG_EOI) and _truncated(data):
        return None, "truncated", "the JPEG stops before its end; copy it again"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is not None and image.size:
        return image, "", ""
    if path.suffix.lower() in UNSUPPORTED_SUFFIXES:
        return None, "unsupported_format", f"{path.suffix} images: convert to JPEG/PNG"
    return None, "unreadable", _sniff(data)


def _truncated(data: bytes) -> bool:
    """Whether a JPEG without a final end marker is cut short (not just padded)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except OSError as err:
        return "truncated" in str(err)
    except Exception:  # not PIL's to judge: OpenCV decides below
        return False
    return False


def _sniff(data: bytes) -> str:
    head = data[:64]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a decodable image (OpenCV cannot read these bytes)"
    if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
        return f"text, not image data: {text.strip()[:40]!r}"
    return "not a decodable image (OpenCV cannot read these bytes)"


def _decoded_batches(
    files: Sequence[Path], size: int, pool: ThreadPoolExecutor
) -> Iterator[list[_Read]]:
    """Yields the files decoded, `size` at a time; the next batch decodes meanwhile."""

    def submit(chunk: Sequence[Path]) -> list[Future]:
        return [pool.submit(read_image, path) for path in chunk]

    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    pending = submit(chunks[0]) if chunks else []
    for index, chunk in enumerate(chunks):
        current = pending
        pending = submit(chunks[index + 1]) if index + 1 < len(chunks) else []
        yield [
            _Read(path, *future.result())
            for path, future in zip(chunk, current, strict=True)
        ]


# --- prediction -----------------------------------------------------------------


def providers(device: str) -> list[str]:
    """ONNX Runtime execution providers for `auto`, `cpu` or `cuda`.

    Raises:
        ValueError: For `cuda` when this onnxruntime has no CUDA provider.
    """
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "cuda" and not cuda:
        raise ValueError(
            "device cuda: this onnxruntime has no CUDAExecutionProvider; install "
            "onnxruntime-gpu or use device=cpu"
        )
    if device == "cpu" or not cuda:
        return ["CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def yolo_lines(detections: Detections, width: int, height: int) -> str:
    """Detections as YOLO txt lines: `cls cx cy w h conf`, normalised to the image."""
    lines = []
    for (x1, y1, x2, y2), score, cls in zip(
        detections.boxes.tolist(),
        detections.scores.tolist(),
        detections.class_ids.tolist(),
        strict=True,
    ):
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {score:.5f}")
    return "".join(f"{line}\n" for line in lines)


def _label_paths(files: list[Path], folder: Path) -> list[str]:
    """`labels/<relative path>.txt` per image; `a.jpg` and `a.png` stay apart."""
    stems = Counter(f.relative_to(folder).with_suffix("").as_posix() for f in files)
    paths = []
    for path in files:
        relative = path.relative_to(folder)
        stem = relative.with_suffix("").as_posix()
        name = stem if stems[stem] == 1 else relative.as_posix()
        paths.append(f"{LABELS_DIR}/{name}.txt")
    return paths


def _grid_indices(count: int, size: int) -> set[int]:
    """`size` image indices spread evenly over `count` images."""
    if count == 0 or size == 0:
        return set()
    return {round(i) for i in np.linspace(0, count - 1, min(size, count))}


def _thumbnail(image: np.ndarray, label_text: str, names: list[str], caption: str):
    """One grid cell: the image fitted into the cell, boxes drawn, name below."""
    h, w = image.shape[:2]
    scale = _CELL / max(h, w)
    small = cv2.resize(
        image,
        (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA,
    )
    # Predicted lines end with a confidence: `cls cx cy w h conf` is a box, while
    # draw_boxes reads more than 5 values as a polygon.
    boxes = "\n".join(" ".join(line.split()[:5]) for line in label_text.splitlines())
    draw_boxes(small, boxes, names)
    cell = np.full((_CELL + _CAPTION, _CELL, 3), 255, np.uint8)
    top, left = (_CELL - small.shape[0]) // 2, (_CELL - small.shape[1]) // 2
    cell[top : top + small.shape[0], left : left + small.shape[1]] = small
    text = caption if len(caption) <= 34 else caption[:15] + "..." + caption[-16:]
    cv2.putText(
        cell,
        text,
        (3, _CELL + 13),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.38,
        (40, 40, 40),
        1,
        cv2.LINE_AA,
    )
    return cell


def _write_grid(cells: list[np.ndarray], path: Path) -> None:
    columns = math.ceil(math.sqrt(len(cells)))
    rows = math.ceil(len(cells) / columns)
    height, width = cells[0].shape[:2]
    canvas = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for index, cell in enumerate(cells):
        r, c = divmod(index, columns)
        canvas[r * height : (r + 1) * height, c * width : (c + 1) * width] = cell
    if not cv2.imwrite(str(path), canvas, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise OSError(f"could not write {path}")


def predict_folder(
    folder: Path,
    onnx_path: Path,
    out_dir: Path,
    settings: BatchSettings | None = None,
    *,
    source: str | None = None,
    model: dict[str, Any] | None = None,
    progress: bool = True,
) -> PredictionSet:
    """Runs the detector over every image under `folder` and writes the outputs.

    `out_dir` receives `labels/<relative path>.txt` (YOLO `cls cx cy w h conf`
    per box; an empty file for an image without any), `predictions.json`,
    `predictions.csv` (one row per box, pixels), `bad_files.csv` (files that are
    not decodable images, with a reason), `sample_grid.jpg` and `summary.json`.
    A bad file never stops the run: images in = predicted + bad.

    Args:
        folder: The images, searched recursively.
        onnx_path: An `.onnx` exported by `visionops.inference.export_onnx`.
        out_dir: A new or empty folder.
        settings: Thresholds, batch size, threads, device, grid size.
        source: What the user asked for (a path or `dataset:<split>`), recorded.
        model: What the model is (e.g. `Champion.model_dump()`), recorded.
        progress: Show a tqdm progress bar.

    Returns:
        The output directory.
    """
    from tqdm import tqdm

    settings = settings or BatchSettings()
    folder, out_dir = Path(folder), Path(out_dir)
    ensure_empty_dir(out_dir)
    inputs = list_inputs(folder)
    threads = resolve_workers(settings.threads)
    detector = OnnxDetector(
        onnx_path, threads=threads, providers=providers(settings.device)
    )
    names = [detector.names[i] for i in sorted(detector.names)]
    label_paths = _label_paths(inputs.files, folder)
    grid_picks = _grid_indices(len(inputs.files), settings.grid_size)

    records: list[dict[str, Any]] = []
    bad: list[dict[str, str]] = []
    cells: list[np.ndarray] = []
    index = 0
    start = time.perf_counter()
    with (
        (out_dir / PREDICTIONS_CSV).open("w", newline="") as table,
        ThreadPoolExecutor(max_workers=threads) as pool,
        tqdm(
            total=len(inputs.files),
            unit="img",
            desc="predict",
            disable=not progress,
            mininterval=1.0,
        ) as bar,
    ):
        rows = csv.writer(table)
        rows.writerow(CSV_COLUMNS)
        for batch in _decoded_batches(inputs.files, settings.batch, pool):
            found = detector.predict_batch(
                [r.image for r in batch if r.image is not None],
                conf=settings.conf,
                iou=settings.iou,
                max_det=settings.max_det,
            )
            results = iter(found)
            for read in batch:
                relative = read.path.relative_to(folder).as_posix()
                if read.image is None:
                    bad.append(
                        {"file": relative, "reason": read.reason, "detail": read.detail}
                    )
                else:
                    detections = next(results)
                    height, width = read.image.shape[:2]
                    text = yolo_lines(detections, width, height)
                    label = out_dir / label_paths[index]
                    label.parent.mkdir(parents=True, exist_ok=True)
                    label.write_text(text)
                    boxes = _rounded(detections.to_records(detector.names))
                    records.append(
                        {
                            "image": relative,
                            "width": width,
                            "height": height,
                            "label": label_paths[index],
                            "detections": boxes,
                        }
                    )
                    rows.writerows(
                        (relative, b["class_id"], b["class_name"], b["confidence"])
                        + tuple(b["box"].values())
                        for b in boxes
                    )
                    if index in grid_picks:
                        cells.append(_thumbnail(read.image, text, names, relative))
                index += 1
            bar.update(len(batch))
    seconds = time.perf_counter() - start

    summary = _summary(
        inputs, records, bad, names, seconds, folder, source, model, settings
    )
    with (out_dir / BAD_FILES_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=("file", "reason", "detail"))
        writer.writeheader()
        writer.writerows(bad)
    document = {
        "summary": summary,
        "class_names": names,
        "images": records,
        "bad_files": bad,
    }
    (out_dir / PREDICTIONS_JSON).write_text(json.dumps(document, indent=1))
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    if cells:
        _write_grid(cells, out_dir / SAMPLE_GRID)
    return PredictionSet(out_dir)


def _rounded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pixels to 0.01 and confidences to 1e-5, the same in the JSON and the CSV."""
    for record in records:
        record["confidence"] = round(record["confidence"], 5)
        record["box"] = {k: round(v, 2) for k, v in record["box"].items()}
    return records


def _summary(
    inputs: Inputs,
    records: list[dict[str, Any]],
    bad: list[dict[str, str]],
    names: list[str],
    seconds: float,
    folder: Path,
    source: str | None,
    model: dict[str, Any] | None,
    settings: BatchSettings,
) -> dict[str, Any]:
    boxes = [d for r in records for d in r["detections"]]
    per_class = Counter(d["class_name"] for d in boxes)
    confidences = [d["confidence"] for d in boxes]
    return {
        "source": source or str(folder),
        "folder": str(folder),
        "model": model,
        "settings": settings.model_dump(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "images_in": len(inputs.files),
        "predicted": len(records),
        "bad": len(bad),
        "bad_reasons": dict(Counter(b["reason"] for b in bad)),
        "ignored_files": inputs.ignored,
        "images_with_boxes": sum(1 for r in records if r["detections"]),
        "boxes": len(boxes),
        "boxes_per_class": {name: per_class.get(name, 0) for name in names},
        "mean_confidence": round(float(np.mean(confidences)), 4)
        if confidences
        else None,
        "seconds": round(seconds, 3),
        "images_per_s": round(len(records) / seconds, 2) if seconds > 0 else None,
    }


# --- after the run ----------------------------------------------------------------


def export_predictions(predictions: PredictionSet, dest: Path) -> Path:
    """Copies a run's outputs into the new or empty folder `dest`.

    Real copies, not hard links: editing an exported file in place must not
    change the stored artifact.
    """
    ensure_empty_dir(dest)
    shutil.copytree(predictions.root, dest, dirs_exist_ok=True)
    return dest


def format_summary(summary: dict[str, Any]) -> str:
    """A batch run's summary in a few lines for the terminal."""
    model = summary.get("model") or {}
    per_class = ", ".join(f"{k} {v}" for k, v in summary["boxes_per_class"].items())
    mean = summary["mean_confidence"]
    lines = [
        f"Batch: {summary['images_in']} images in = {summary['predicted']} predicted"
        f" + {summary['bad']} bad ({summary['images_per_s']} images/s)",
        f"  boxes: {summary['boxes']} ({per_class or 'none'}),"
        f" mean confidence {mean if mean is not None else '-'}",
    ]
    if model:
        lines.append(f"  model: {model.get('name')} v{model.get('version')}")
    if summary["bad"]:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["bad_reasons"].items())
        lines.append(f"  bad files ({reasons}): see {BAD_FILES_CSV}")
    if summary["ignored_files"]:
        ignored = ", ".join(f"{k} {v}" for k, v in summary["ignored_files"].items())
        lines.append(f"  not images, ignored: {ignored}")
    return "\n".join(lines)
