"""Batch inference: the champion ONNX model over a folder, predictions as files.

The shared part (inputs, decoding, bad files, grid, JSON, summary) lives here;
what differs per task (CSV rows, label or mask files, figures) is the task's
`BatchOutput` (`Task.batch_output`).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from visionops.batch.grid import cell, fit, grid_indices, write_grid
from visionops.config import BatchSettings, DriftSettings, FeedbackSettings
from visionops.core import images
from visionops.core.files import CsvWriter, ensure_empty_dir
from visionops.core.parallel import resolve_workers
from visionops.core.video import VIDEO_SUFFIXES
from visionops.data.manifest import IMAGE_SUFFIXES
from visionops.feedback.drift import write_report as write_drift_report
from visionops.feedback.features import Featurizer, Reference
from visionops.feedback.records import Recorder, default_answer
from visionops.feedback.store import FeedbackStore
from visionops.tasks import Task

# Image formats OpenCV may not decode: tried anyway, reported as unsupported if not.
UNSUPPORTED_SUFFIXES = (".gif", ".heic", ".heif", ".avif", ".jp2", ".ico", ".svg")
INPUT_SUFFIXES = (*IMAGE_SUFFIXES, ".jfif", ".jpe", *UNSUPPORTED_SUFFIXES)

PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"
BAD_FILES_CSV = "bad_files.csv"
SAMPLE_GRID = "sample_grid.jpg"
SUMMARY_JSON = "summary.json"
REPORT_HTML = "report.html"


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

    @property
    def drift(self) -> Path | None:
        """`drift.json` beside the outputs, if the run compared with a reference."""
        path = self.root / "drift.json"
        return path if path.is_file() else None

    @property
    def report(self) -> Path:
        """`report.html` beside the outputs (written by `batch_report.write_report`)."""
        return self.root / REPORT_HTML


@dataclass
class Inputs:
    """What a folder holds: files to predict, and files ignored by their suffix.

    `videos` are predicted frame by frame (`visionops.batch.video`); `root` is
    what the paths are relative to (the folder, or a single file's folder).
    """

    files: list[Path]
    ignored: dict[str, int]
    videos: list[Path] = field(default_factory=list)
    root: Path = Path()


@dataclass
class _Read:
    path: Path
    image: np.ndarray | None
    reason: str = ""
    detail: str = ""


# --- sources and inputs ----------------------------------------------------------


def list_inputs(folder: Path) -> Inputs:
    """Lists the files to predict under `folder`, recursively, sorted.

    Files with an image suffix are inputs, decodable or not (a bad one is
    reported, never skipped), and so are videos. Other files (labels, yaml,
    notes) are counted by suffix; hidden files and folders are left out. A
    single image or video file is an input alone.

    Raises:
        NotADirectoryError: If `folder` is neither a folder nor a file.
    """
    if folder.is_file():
        paths, root = [folder], folder.parent
    elif folder.is_dir():
        paths, root = sorted(folder.rglob("*")), folder
    else:
        raise NotADirectoryError(f"{folder} is not a folder")
    files: list[Path] = []
    videos: list[Path] = []
    ignored: Counter[str] = Counter()
    for path in paths:
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if path.suffix.lower() in INPUT_SUFFIXES:
            files.append(path)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(path)
        else:
            ignored[path.suffix.lower() or "(none)"] += 1
    return Inputs(files, dict(sorted(ignored.items())), videos, root)


def read_image(path: Path) -> tuple[np.ndarray | None, str, str]:
    """Decodes an image as BGR uint8, as Ultralytics reads it (`visionops.core.images`).

    Returns:
        The image (None when bad), and for a bad file its reason (`zero_byte`,
        `unreadable`, `truncated`, `unsupported_format`) and a detail.
    """
    try:
        return images.read(path), "", ""
    except images.ImageError as err:
        if err.reason == images.UNREADABLE and path.suffix.lower() in (
            UNSUPPORTED_SUFFIXES
        ):
            return (
                None,
                "unsupported_format",
                f"{path.suffix} images: convert to JPEG/PNG",
            )
        detail = err.detail
        if err.reason == images.TRUNCATED:
            detail = "the JPEG stops before its end; copy it again"
        return None, err.reason, detail


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


def predict_folder(
    folder: Path,
    onnx_path: Path,
    out_dir: Path,
    settings: BatchSettings | None = None,
    *,
    task: Task,
    source: str | None = None,
    model: dict[str, Any] | None = None,
    progress: bool = True,
    feedback: FeedbackSettings | None = None,
    reference: Reference | None = None,
    drift: DriftSettings | None = None,
    store: str | Path | None = None,
) -> PredictionSet:
    """Runs the task's predictor over every image under `folder`, writes the outputs.

    `out_dir` receives `predictions.json`, `predictions.csv` (its rows are the
    task's: one per box for detection, with `labels/<relative path>.txt` files;
    one per image with every class's probability for classification),
    `bad_files.csv` (files that are not decodable images, with a reason),
    `sample_grid.jpg` (predictions drawn) and `summary.json`. A bad file never
    stops the run: images in = predicted + bad.

    Args:
        folder: The images, searched recursively.
        onnx_path: An `.onnx` exported by `visionops.engine.onnx.export_onnx`.
        out_dir: A new or empty folder.
        settings: Thresholds, batch size, threads, device, grid size.
        task: The model's task (`Champion.get_task()`).
        source: What the user asked for (a path or `dataset:<split>`), recorded.
        model: What the model is (e.g. `Champion.model_dump()`), recorded.
        progress: Show a tqdm progress bar.
        feedback: Record each image (source `batch`) in the feedback store and
            keep those the policies select; None: nothing recorded.
        reference: The model's drift reference; given (and `drift.enabled`),
            `drift.html` and `drift.json` compare the images with it.
        drift: The drift thresholds (the defaults when None).
        store: The feedback store's folder (None: this machine's).

    Returns:
        The output directory.
    """
    from tqdm import tqdm

    settings = settings or BatchSettings()
    folder, out_dir = Path(folder), Path(out_dir)
    ensure_empty_dir(out_dir)
    inputs = list_inputs(folder)
    folder = inputs.root  # a single file's folder
    threads = resolve_workers(settings.threads)
    predictor = task.predictor(
        onnx_path, threads=threads, providers=providers(settings.device)
    )
    names = [predictor.names[i] for i in sorted(predictor.names)]
    output = task.batch_output(out_dir, names, folder, inputs.files)
    grid_picks = grid_indices(len(inputs.files), settings.grid_size)
    thresholds = {k: getattr(settings, k) for k in task.thresholds}
    recorder = _recorder(task, predictor.names, model or {}, feedback, store)
    drift = drift or DriftSettings()
    featurizer = None
    if reference is not None and drift.enabled:
        featurizer = Featurizer(task, onnx_path, predictor=predictor, pca=reference.pca)
    features: list[dict[str, Any]] = []

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
        rows = CsvWriter(table)  # names from the model and the folder: escaped
        rows.writerow(output.columns)
        for batch in _decoded_batches(inputs.files, settings.batch, pool):
            frames = [r.image for r in batch if r.image is not None]
            began = time.perf_counter()
            found = task.predict(predictor, frames, **thresholds)
            per_image_ms = (time.perf_counter() - began) * 1000 / max(len(frames), 1)
            results = iter(found)
            for read in batch:
                relative = read.path.relative_to(folder).as_posix()
                if read.image is None:
                    bad.append(
                        {"file": relative, "reason": read.reason, "detail": read.detail}
                    )
                else:
                    prediction = next(results)
                    height, width = read.image.shape[:2]
                    fields, lines = output.add(index, relative, read.image, prediction)
                    records.append(
                        {"image": relative, "width": width, "height": height, **fields}
                    )
                    rows.writerows(lines)
                    if featurizer is not None:
                        features.append(featurizer(read.image, prediction))
                    if recorder is not None:
                        recorder.record(
                            "batch",
                            read.image,
                            prediction,
                            name=relative,
                            latency_ms=per_image_ms,
                            answer=_answer_of(task, prediction, predictor.names),
                            features=features[-1] if featurizer else None,
                        )
                    if index in grid_picks:
                        small = output.draw(
                            fit(read.image), prediction, read.image.shape
                        )
                        cells.append(cell(small, relative))
                index += 1
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    videos, bad_videos, video_figures = _videos(
        inputs, out_dir, task, predictor, settings, progress
    )
    if recorder is not None:
        recorder.close()  # the kept images written before the run ends

    summary = {
        **_summary(inputs, records, bad, seconds, folder, source, model, settings),
        "task": task.name,
        "thresholds": thresholds,
        "counts_title": output.counts_title,
        **output.summary(records),
    }
    if video_figures:
        summary["videos"] = video_figures
    if recorder is not None:
        summary["feedback"] = recorder.status()
    with (out_dir / BAD_FILES_CSV).open("w", newline="") as handle:
        columns = ("file", "reason", "detail")
        writer = CsvWriter(handle)
        writer.writerow(columns)
        writer.writerows([row[c] for c in columns] for row in bad + bad_videos)
    document = {
        "summary": summary,
        "class_names": names,
        "images": records,
        "bad_files": bad,
        **({"videos": videos, "bad_videos": bad_videos} if inputs.videos else {}),
    }
    (out_dir / PREDICTIONS_JSON).write_text(json.dumps(document, indent=1))
    (out_dir / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
    if cells:
        write_grid(cells, out_dir / SAMPLE_GRID)
    if featurizer is not None and reference is not None:
        write_drift_report(features, reference, drift, out_dir)
    return PredictionSet(out_dir)


def _videos(
    inputs: Inputs,
    out_dir: Path,
    task: Task,
    predictor: Any,
    settings: BatchSettings,
    progress: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], dict[str, Any]]:
    """The videos' records, bad ones and summary (`visionops.batch.video`); no
    summary without videos."""
    if not inputs.videos:
        return [], [], {}
    from visionops.batch.video import predict_videos, video_summary

    records, bad = predict_videos(
        inputs.videos,
        inputs.root,
        out_dir,
        task=task,
        predictor=predictor,
        settings=settings,
        progress=progress,
    )
    return records, bad, video_summary(len(inputs.videos), records, bad)


def _recorder(
    task: Task,
    names: dict[int, str],
    model: dict[str, Any],
    feedback: FeedbackSettings | None,
    store: str | Path | None = None,
) -> Recorder | None:
    """The run's recorder (source `batch`), None when nothing is recorded."""
    if feedback is None or not feedback.record:
        return None
    identity = {
        "name": model.get("name"),
        "version": model.get("version"),
        "bento": model.get("bento_tag"),
    }
    return Recorder(task, names, identity, feedback, FeedbackStore(store, "batch"))


def _answer_of(task: Task, prediction: Any, names: dict[int, str]) -> Any:
    """The task's answer to a prediction, made only if the image is kept."""
    return lambda: default_answer(task, prediction, names)


def _summary(
    inputs: Inputs,
    records: list[dict[str, Any]],
    bad: list[dict[str, str]],
    seconds: float,
    folder: Path,
    source: str | None,
    model: dict[str, Any] | None,
    settings: BatchSettings,
) -> dict[str, Any]:
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
    per_class = ", ".join(f"{k} {v}" for k, v in summary["per_class"].items())
    figures = ", ".join(
        f"{k} {'-' if v is None else v}" for k, v in summary["figures"].items()
    )
    lines = [
        f"Batch: {summary['images_in']} images in = {summary['predicted']} predicted"
        f" + {summary['bad']} bad ({summary['images_per_s']} images/s)",
        f"  {summary['task']}: {figures}; per class: {per_class or 'none'}",
    ]
    if model:
        lines.append(f"  model: {model.get('name')} v{model.get('version')}")
    if kept := summary.get("feedback"):
        lines.append(
            f"  recorded {kept['recorded']} images, kept {kept['selected']} for "
            f"review ({kept['store']}), {kept['failed']} failures"
        )
    if summary["bad"]:
        reasons = ", ".join(f"{k} {v}" for k, v in summary["bad_reasons"].items())
        lines.append(f"  bad files ({reasons}): see {BAD_FILES_CSV}")
    if "videos" in summary:
        v = summary["videos"]
        lines.append(
            f"  videos: {v['videos_in']} in = {v['predicted']} predicted + {v['bad']}"
            f" bad; {v['frames_predicted']} frames ({v['frames_per_s']} frames/s),"
            f" {v['tracks']} tracks"
        )
    if summary["ignored_files"]:
        ignored = ", ".join(f"{k} {v}" for k, v in summary["ignored_files"].items())
        lines.append(f"  not images, ignored: {ignored}")
    return "\n".join(lines)
