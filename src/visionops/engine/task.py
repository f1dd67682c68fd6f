"""What every task defines: models, metrics, evaluation, predictor and view hooks."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from visionops.data.version import DatasetVersion
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.report import EvalReport

# `yolo11n`, `yolo26s-cls`, `yolo11m-seg`: family, scale, task suffix.
MODEL_NAME = re.compile(r"^yolo(11|26)[nsmlx](?P<suffix>-cls|-seg)?$")
MODEL_FILE_SUFFIXES = (".pt", ".yaml", ".yml")


class TaskError(ValueError):
    """A value does not fit the task (model name, metric, pipeline)."""


class Task(ABC):
    """One computer-vision task as the shared pipelines see it.

    Subclasses hold only what differs between tasks, as Ultralytics'
    `YOLO.task_map` maps a task to its model, trainer, validator and predictor.
    Shared code asks the task (`visionops.tasks.get_task(name)`), never
    `if task == ...`.

    Attributes:
        name: The project's task name (`detect`, `classify`, `segment`).
        ultralytics_task: Ultralytics' name for it (a key of `YOLO.task_map`).
        model_suffix: Ultralytics model-name suffix (`""`, `-cls`, `-seg`).
        default_model: The model trained when the config names none.
        default_model_name: Registered model name when `model.name` is unset.
        description: Default description of that registered model.
        val_metrics_names: Metrics measured on the validation split during
            training, in display order (what selection may use).
        default_metric: Default selection and promotion metric.
        headline_metrics: Rows of the decision report and the status line.
        pipelines: Pipelines that can run a model of this task.
    """

    name: ClassVar[str]
    ultralytics_task: ClassVar[str]
    model_suffix: ClassVar[str]
    default_model_name: ClassVar[str]
    description: ClassVar[str]
    val_metrics_names: ClassVar[tuple[str, ...]]
    default_metric: ClassVar[str]
    headline_metrics: ClassVar[tuple[str, ...]]
    pipelines: ClassVar[frozenset[str]] = frozenset({"training"})

    @property
    def default_model(self) -> str:
        """`yolo11n` plus the task's suffix."""
        return f"yolo11n{self.model_suffix}"

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # --- models ----------------------------------------------------------------

    def model_name(self, model: str) -> str:
        """The Ultralytics model name of this task for a name or a file.

        `yolo11n` becomes `yolo11n-cls` for classification; a name that already
        carries this task's suffix, and a path to `.pt`/`.yaml`, stay as they are.

        Raises:
            TaskError: The name carries another task's suffix, or is no model name.
        """
        if model.endswith(MODEL_FILE_SUFFIXES):
            return model
        match = MODEL_NAME.match(model)
        if match is None:
            raise TaskError(
                f"{model!r} is not a model name; use e.g. yolo11n, yolo11s, yolo26n "
                f"(or {self.default_model}), or a path to .pt weights or a .yaml"
            )
        suffix = match.group("suffix") or ""
        if not suffix:
            return model + self.model_suffix
        if suffix != self.model_suffix:
            raise TaskError(
                f"{model} is not a {self.name} model (the dataset's task is "
                f"{self.name}: use {model.removesuffix(suffix)}{self.model_suffix})"
            )
        return model

    # --- data --------------------------------------------------------------------

    def ultralytics_data(self, dataset: DatasetVersion) -> Path:
        """What Ultralytics takes as `data=` for this dataset version."""
        return dataset.ultralytics_data

    def split_images(self, dataset: DatasetVersion, split: str) -> list[Path]:
        """The image files of one split of a dataset version."""
        return dataset.split_images(split)

    # --- metrics -------------------------------------------------------------------

    @abstractmethod
    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps Ultralytics' validation results dict to the project's metric names."""

    @abstractmethod
    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """The metrics a test evaluation yields for these classes (for promotion)."""

    @abstractmethod
    def evaluate(
        self,
        weights: Path,
        dataset: DatasetVersion,
        out_dir: Path,
        *,
        imgsz: int,
        batch: int = 8,
        device: str = "auto",
        split: str = "test",
        positive_class: str | None = None,
    ) -> EvalReport:
        """Measures `.pt` weights, or an ONNX export of them, on one split.

        Ultralytics runs an `.onnx` through ONNX Runtime with the same
        preprocessing, so FP32 and INT8 exports are measured alike. Plots land
        in `out_dir`.

        Raises:
            ValueError: The dataset has no such split (or no images in it).
        """

    def evaluation_html(self, report: EvalReport, plot_dir: Path) -> str:
        """The test evaluation as one HTML page for the ZenML dashboard."""
        return evaluation_html(report, plot_dir)

    def resample_metric(
        self, per_image: PerImage, metric: str, class_names: Sequence[str]
    ) -> MetricFn:
        """`metric` recomputed from an evaluation's per-image results on resamples
        of its images (`visionops.engine.bootstrap`).

        Raises:
            ValueError: The task cannot recompute this metric per image.
        """
        raise ValueError(f"the {self.name} task keeps no per-image results")

    # --- inference (evaluation latency, batch, service) ------------------------------

    @abstractmethod
    def predictor(
        self, onnx_path: Path, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """The ONNX Runtime predictor of this task's exports.

        It has `names`, `imgsz`, `predict(image_bgr)`, `predict_batch(frames)`
        and `preprocess(image_bgr)`, the (1, 3, h, w) input blob `predict` feeds
        the graph (what INT8 calibration runs on).
        """

    def log_model(self, onnx_path: Path, metadata: dict[str, Any]) -> Any:
        """Logs the ONNX export as an MLflow model into the active run.

        The registry versions it. This default logs the plain ONNX flavour; a
        task with a pyfunc (base64 images in, a table out) overrides it.

        Returns:
            MLflow's `ModelInfo` (its `model_uri` is registered).
        """
        import mlflow.onnx
        import onnx

        return mlflow.onnx.log_model(
            onnx.load(str(onnx_path)),
            name="model",
            metadata={"task": self.name, **metadata},
        )

    def predict(
        self,
        predictor: Any,
        frames: Sequence[np.ndarray],
        *,
        timing: dict[str, float] | None = None,
        **thresholds: Any,
    ) -> list[Any]:
        """Predicts BGR frames with the thresholds of the service and batch.

        This default passes the thresholds (`conf`, `iou`, `max_det`; the
        predictor's defaults where not given) to `predictor.predict_batch`; a
        task without thresholds overrides it and ignores them.

        Args:
            predictor: What `predictor()` returned.
            frames: uint8 (H, W, 3) BGR images.
            timing: When given, receives the milliseconds of each stage.
            **thresholds: `conf`, `iou`, `max_det`.

        Returns:
            One prediction per frame, in order.
        """
        return predictor.predict_batch(frames, timing=timing, **thresholds)

    def batch_output(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> BatchOutput:
        """What a batch run writes per image for this task (`BatchOutput`)."""
        raise TaskError(f"The {self.name} task has no batch outputs yet.")

    def render(
        self, frame: np.ndarray, prediction: Any, names: Mapping[int, str]
    ) -> np.ndarray:
        """A copy of a BGR frame with the prediction drawn on it."""
        raise TaskError(f"The {self.name} task has no renderer yet.")

    def require(self, pipeline: str) -> None:
        """Fails when a pipeline cannot run a model of this task yet.

        Raises:
            TaskError: Naming the task, the pipeline and what is available.
        """
        if pipeline not in self.pipelines:
            raise TaskError(
                f"the {pipeline} pipeline does not handle {self.name} models in this "
                f"version (it does: {', '.join(sorted(self.pipelines))})"
            )


def evaluation_html(report: EvalReport, plot_dir: Path) -> str:
    """Metrics, per-class rows and the normalised confusion matrix as one HTML page.

    The default page of `Task.evaluation_html`; it reads only the report's fields,
    so the tasks need not import the training package (which imports them).
    """
    import base64
    import html

    metrics = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{v:.4f}</td></tr>"
        for k, v in report.metrics.items()
    )
    if report.latency_ms is not None:
        metrics += (
            f"<tr><th>ONNX CPU latency @ {report.latency_imgsz}px</th>"
            f"<td>{report.latency_ms:.1f} ms</td></tr>"
        )

    def cell(value: float | str) -> str:
        return html.escape(value if isinstance(value, str) else f"{value:.4f}")

    columns = tuple(report.per_class[0]) if report.per_class else ("class",)
    per_class = "".join(
        "<tr>" + "".join(f"<td>{cell(row[k])}</td>" for k in columns) + "</tr>"
        for row in report.per_class
    )
    matrix = plot_dir / "confusion_matrix_normalized.png"
    image = (
        f'<img style="max-width:640px" src="data:image/png;base64,'
        f'{base64.b64encode(matrix.read_bytes()).decode()}">'
        if matrix.is_file()
        else ""
    )
    table = "<table border=1 cellpadding=4 style='border-collapse:collapse'>"
    header = "".join(f"<th>{c}</th>" for c in columns)
    return (
        "<html><body style='font-family:sans-serif'><h3>Test split: "
        f"{report.images} images, dataset {report.dataset_hash[:12]}</h3>"
        f"{table}{metrics}</table><h3>Per class</h3>{table}<tr>{header}</tr>"
        f"{per_class}</table><h3>Normalised confusion matrix</h3>{image}</body></html>"
    )


def side_file_paths(
    files: Sequence[Path], folder: Path, directory: str, suffix: str
) -> list[str]:
    """`<directory>/<relative path><suffix>` per image of `folder` (a batch run's
    label or mask files); `a.jpg` and `a.png` keep their own suffix, so stay apart."""
    stems = Counter(f.relative_to(folder).with_suffix("").as_posix() for f in files)
    paths = []
    for path in files:
        relative = path.relative_to(folder)
        stem = relative.with_suffix("").as_posix()
        name = stem if stems[stem] == 1 else relative.as_posix()
        paths.append(f"{directory}/{name}{suffix}")
    return paths


class BatchOutput(ABC):
    """A task's share of a batch run: its CSV rows, JSON fields, files and figures.

    `visionops.batch.predict.predict_folder` does the shared part (inputs, decoding, bad
    files, the sample grid, `predictions.json`, `summary.json`); one instance per
    run, made by `Task.batch_output`, adds what differs per task.

    Attributes:
        columns: The header of `predictions.csv`.
        counts_title: What `summary["per_class"]` counts, as a report heading.
        thresholds: The `BatchSettings` the task's predictions depend on.
    """

    columns: tuple[str, ...]
    counts_title: str
    thresholds: ClassVar[tuple[str, ...]] = ("conf", "iou", "max_det")

    def __init__(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> None:
        """Keeps where outputs go, the class names and the run's input files."""
        self.out_dir = out_dir
        self.names = list(names)
        self.folder = folder
        self.files = list(files)

    @abstractmethod
    def add(
        self, index: int, relative: str, image: np.ndarray, prediction: Any
    ) -> tuple[dict[str, Any], list[tuple]]:
        """One predicted image: its JSON record fields and its CSV rows.

        Args:
            index: The image's position in `files`.
            relative: Its path relative to the input folder.
            image: The decoded BGR image.
            prediction: What the task's predictor answered for it.
        """

    @abstractmethod
    def draw(
        self, thumbnail: np.ndarray, prediction: Any, shape: tuple[int, ...]
    ) -> np.ndarray:
        """The prediction drawn on a sample-grid thumbnail of an image of `shape`."""

    @abstractmethod
    def summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The task's figures for `summary.json`.

        Returns:
            Task keys, plus `per_class` (counts by class name, headed
            `counts_title`) and `figures` (label -> value, for the report and
            the terminal).
        """
