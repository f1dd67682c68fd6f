"""What every task defines: models, metrics, evaluation, predictor and view hooks."""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

from visionops.core.files import sha256_file
from visionops.engine.report import EvalReport

if TYPE_CHECKING:
    import numpy as np

    from visionops.data.manifest import Item
    from visionops.data.validate import CheckedLabels, LabelCheck
    from visionops.data.version import DatasetVersion
    from visionops.engine.bootstrap import MetricFn, PerImage
    from visionops.engine.pyfunc import OnnxPyfunc
    from visionops.engine.review import PreLabel, ReviewExport
    from visionops.engine.video import VideoOutput

# `yolo11n`, `yolo26s-cls`, `yolo11m-seg`: family, scale, task suffix.
MODEL_NAME = re.compile(r"^yolo(11|26)[nsmlx](?P<suffix>-cls|-seg)?$")
MODEL_FILE_SUFFIXES = (".pt", ".yaml", ".yml")
# `champion`, `champion@v3`: start from the registered model's champion (or that
# version); run.py's checks pin `champion` to the version it means then.
CHAMPION_MODEL = re.compile(r"^champion(@v?(?P<version>[1-9][0-9]*))?$")
# Display names of the metric keys several tasks report; each task adds its own
# (`Task.metric_labels`), and `Task.metric_label` composes per-class keys.
METRIC_LABELS: Mapping[str, str] = {
    "map50_95": "mAP50-95",
    "map50": "mAP50",
    "map75": "mAP75",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
}
# The prediction thresholds' defaults (`Task.thresholds`; Ultralytics' `predict`
# uses the same): batch settings, the service and the ONNX predictors read them.
DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.7
DEFAULT_MAX_DET = 300


class TaskError(ValueError):
    """A value does not fit the task (model name, metric, pipeline)."""


@dataclass(frozen=True)
class Serving:
    """How the service serves a task's models (`Task.serving`).

    Attributes:
        endpoint: `/<endpoint>` answers one image (and `/<endpoint>_batch`
            several, with `batch`).
        response: The pydantic model of the task's share of one image's answer
            (what `Task.answer` returns); the service adds what every answer
            carries (the image's size, the model, the timings).
        parameters: The endpoint's own request fields, passed to `Task.answer`:
            name -> (type, default or pydantic `Field`).
        blur_faces: Whether the endpoint offers blurring faces before predicting
            (its answer then has `faces_blurred`).
        batch: Whether `/<endpoint>_batch` answers several images at once.
        track: Whether the endpoint takes `track` (a client's session id) and
            answers a track id per object (`Task.answer` gets `track_ids`).
        view: The web page's view of an answer: a JavaScript module whose
            default export has `noun`, `what` and `render(ctx, body, draw)`.
    """

    endpoint: str
    response: type
    view: Path
    parameters: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    blur_faces: bool = False
    batch: bool = False
    track: bool = False


@dataclass(frozen=True)
class EvalSettings:
    """How one evaluation runs: the image size, batch, device, split and, for two
    classes, the positive one (`EvaluationSettings.for_model` makes it)."""

    imgsz: int
    batch: int
    device: str
    split: str = "test"
    positive_class: str | None = None


@dataclass(frozen=True)
class EvalJob:
    """One evaluation under way, as a task's `measure` hook reads it.

    Attributes:
        task: The task measuring.
        weights: `.pt` weights, or an ONNX export of them.
        dataset: The dataset version.
        images: The images of `settings.split` (never empty).
        out_dir: Where plots go.
        settings: How it runs.
    """

    task: Task
    weights: Path
    dataset: DatasetVersion
    images: list[Path]
    out_dir: Path
    settings: EvalSettings


@dataclass
class Scores:
    """What a task measured: the `EvalReport` fields that differ per task."""

    metrics: dict[str, float]
    class_names: list[str]
    per_class: list[dict[str, float | str]] = field(default_factory=list)
    confusion_matrix: list[list[float]] = field(default_factory=list)
    # What each test image contributed, so the metric can be recomputed on any
    # resample of the images (`engine.bootstrap`).
    per_image: PerImage | None = None


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
        metric_labels: Display names of this task's metric keys and per-class
            prefixes, beside the shared `METRIC_LABELS` (see `metric_label`).
        pipelines: Pipelines that can run a model of this task.
        batch_outputs: Its `BatchOutput` class as `module:Class` (imported on
            first use), None while the task has no batch outputs.
        video_outputs: Its `VideoOutput` class (batch over videos: rows per
            frame, tracks, drawing) as `module:Class`; None: no video.
        thresholds: The prediction thresholds its predictor takes (`conf`,
            `iou`, `max_det`: those of `BatchSettings` and the service).
        renderer: The function drawing one prediction on a copy of a frame,
            `(frame, prediction, names)`, as `module:function`; None while the
            task has none (or overrides `render`).
        label_kinds: The label kinds (`visionops.data.manifest`) its datasets
            are ingested from; the first is what a source that can give several
            (COCO: boxes or polygons) is asked for.
        predictor_class: Its ONNX Runtime predictor (`predictor`), an
            `OnnxPredictor` subclass, as `module:Class`.
        pyfunc_class: Its MLflow pyfunc class (`pyfunc_model`) as `module:Class`.
        measurer: The function measuring one `EvalJob` (`measure`), as
            `module:function`.
        resampler: The function recomputing a metric on resamples
            (`resample_metric`), `(per_image, metric, class_names)`, as
            `module:function`; None while the task keeps no per-image results.
        label_checker: The function validating one staged item's labels
            (`check_labels`), `(item, check)`, as `module:function`.
        serving_spec: Its `Serving` declaration (`serving`) as `module:NAME`;
            None while the task is not served.
        answerer: The function giving its share of the service's answer
            (`answer`), `(prediction, names, **parameters)`, as `module:function`.
        review_exporter: Its labelling batch (`review_export`), a
            `visionops.engine.review.ReviewExport` subclass, as `module:Class`.
        summarizer: The function summing up one prediction for its prediction
            record (`summary`), `(prediction, names)`, as `module:function`.
        featurizer: The function flattening one prediction into per-image
            figures (`prediction_features`), `(prediction, names)`, as
            `module:function`.

    The `module:attribute` hooks are imported on first use, so a task's module
    stays light; None (the default) means the task has none yet, and its method
    refuses with a `TaskError`.
    """

    name: ClassVar[str]
    ultralytics_task: ClassVar[str]
    model_suffix: ClassVar[str]
    default_model_name: ClassVar[str]
    description: ClassVar[str]
    val_metrics_names: ClassVar[tuple[str, ...]]
    default_metric: ClassVar[str]
    headline_metrics: ClassVar[tuple[str, ...]]
    metric_labels: ClassVar[Mapping[str, str]] = {}
    pipelines: ClassVar[frozenset[str]] = frozenset({"training"})
    thresholds: ClassVar[tuple[str, ...]] = ("conf", "iou", "max_det")
    batch_outputs: ClassVar[str | None] = None
    video_outputs: ClassVar[str | None] = None
    renderer: ClassVar[str | None] = None
    label_kinds: ClassVar[tuple[str, ...]] = ()
    predictor_class: ClassVar[str | None] = None
    pyfunc_class: ClassVar[str | None] = None
    measurer: ClassVar[str | None] = None
    resampler: ClassVar[str | None] = None
    label_checker: ClassVar[str | None] = None
    serving_spec: ClassVar[str | None] = None
    answerer: ClassVar[str | None] = None
    review_exporter: ClassVar[str | None] = None
    summarizer: ClassVar[str | None] = None
    featurizer: ClassVar[str | None] = None

    @property
    def default_model(self) -> str:
        """`yolo11n` plus the task's suffix."""
        return f"yolo11n{self.model_suffix}"

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __str__(self) -> str:
        return self.name

    # --- models ----------------------------------------------------------------

    def model_name(self, model: str) -> str:
        """The Ultralytics model name of this task for a name or a file.

        `yolo11n` becomes `yolo11n-cls` for classification; a name that already
        carries this task's suffix, and a path to `.pt`/`.yaml`, stay as they are.

        Raises:
            TaskError: The name carries another task's suffix, or is no model name.
        """
        if model.endswith(MODEL_FILE_SUFFIXES) or CHAMPION_MODEL.match(model):
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

    @property
    def layout(self) -> ModuleType:
        """The task's dataset layout: the `layout` module beside its task module.

        Every layout module has the same functions: `place_item`, `write_config`,
        `ultralytics_data`, `split_dir`, `split_images`, `label_file`,
        `image_class`, and the `HASHED` paths (what the content hash covers). A
        layout whose label lines are instances rather than boxes names the card
        key they are counted under (`COUNTS_KEY`).
        """
        package = type(self).__module__.rpartition(".")[0]
        return importlib.import_module(f"{package}.layout")

    @property
    def counts_key(self) -> str:
        """The per-class count of a dataset card that its histogram shows."""
        return str(getattr(self.layout, "COUNTS_KEY", "boxes_per_class"))

    def ultralytics_data(self, dataset: DatasetVersion) -> Path:
        """What Ultralytics takes as `data=` for this dataset version."""
        return Path(self.layout.ultralytics_data(dataset.root))

    def split_dir(self, dataset: DatasetVersion, split: str) -> Path:
        """The folder holding one split's images (searched recursively)."""
        return Path(self.layout.split_dir(dataset.root, split))

    def split_images(self, dataset: DatasetVersion, split: str) -> list[Path]:
        """The image files of one split of a dataset version, sorted."""
        return list(self.layout.split_images(dataset.root, split))

    def check_labels(self, item: Item, check: LabelCheck) -> CheckedLabels:
        """Validates the labels of one staged item (`visionops.data.validate`).

        Runs in validation's worker processes, after the image passed its checks.

        Returns:
            The item (its label path may change), the files to write for it and
            the fixes made.

        Raises:
            visionops.data.validate.Reject: With the quarantine reason.
        """
        return self._hook("label_checker", "dataset validation")(item, check)

    # --- metrics -------------------------------------------------------------------

    @abstractmethod
    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Maps Ultralytics' validation results dict to the project's metric names."""

    def metric_label(self, key: str) -> str:
        """The one display name of a metric key, for the page, reports and status.

        A listed key has its label (`map50_95`: mAP50-95, `top1`: top-1); a key
        made of a listed prefix and a rest reads as the prefix's label and the
        rest's label, or the rest as it is, a class name (`iou_general_trashbag`:
        IoU general_trashbag, `mask_map50_95`: mask mAP50-95); any other key
        shows as it is.
        """
        labels = {**METRIC_LABELS, **self.metric_labels}
        if key in labels:
            return labels[key]
        for prefix in sorted(labels, key=len, reverse=True):
            rest = key.removeprefix(f"{prefix}_")
            if rest != key and rest:
                return f"{labels[prefix]} {labels.get(rest, rest)}"
        return key

    @abstractmethod
    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """The metrics a test evaluation yields for these classes (for promotion)."""

    def evaluate(
        self,
        weights: Path,
        dataset: DatasetVersion,
        out_dir: Path,
        settings: EvalSettings,
    ) -> EvalReport:
        """Measures `.pt` weights, or an ONNX export of them, on one split.

        Ultralytics runs an `.onnx` through ONNX Runtime with the same
        preprocessing, so FP32 and INT8 exports are measured alike. Plots land
        in `out_dir`; what is measured is the task's (`measure`).

        Raises:
            ValueError: The dataset has no such split (or no images in it).
        """
        split = settings.split
        images = self.split_images(dataset, split)
        if not images:
            raise ValueError(
                f"The dataset has no {split} split ({dataset.root}); re-run ingestion "
                f"with split.{split} > 0 so models are measured on images they never "
                "saw."
            )
        scores = self.measure(
            EvalJob(self, weights, dataset, images, out_dir, settings)
        )
        return EvalReport(
            task=self.name,
            split=split,
            dataset_hash=dataset.hash,
            weights_sha256=sha256_file(weights),
            imgsz=settings.imgsz,
            images=len(images),
            metrics=scores.metrics,
            per_class=scores.per_class,
            class_names=scores.class_names,
            confusion_matrix=scores.confusion_matrix,
            per_image=scores.per_image,
        )

    def measure(self, job: EvalJob) -> Scores:
        """The task's metrics, per-class rows and confusion matrix for one job
        (`measurer`)."""
        return self._hook("measurer", "evaluation")(job)

    def evaluation_html(self, report: EvalReport, plot_dir: Path) -> str:
        """The test evaluation as one HTML page for the ZenML dashboard."""
        return evaluation_html(report, plot_dir, self.metric_label)

    def resample_metric(
        self, per_image: PerImage, metric: str, class_names: Sequence[str]
    ) -> MetricFn:
        """`metric` recomputed from an evaluation's per-image results on resamples
        of its images (`visionops.engine.bootstrap`).

        Raises:
            ValueError: The task cannot recompute this metric per image.
        """
        if self.resampler is None:
            raise ValueError(f"the {self.name} task keeps no per-image results")
        return _attribute(self.resampler)(per_image, metric, class_names)

    # --- inference (evaluation latency, batch, service) ------------------------------

    def predictor(
        self, onnx_path: Path, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """The ONNX Runtime predictor of this task's exports (`predictor_class`).

        A subclass of `visionops.engine.onnx.OnnxPredictor`: `names`, `imgsz`,
        `predict(image_bgr)`, `predict_batch(frames)` and
        `preprocess(image_bgr)`, the (1, 3, h, w) input blob `predict` feeds the
        graph (what INT8 calibration runs on).
        """
        predictor = self._hook("predictor_class", "ONNX predictor")
        return predictor(onnx_path, threads=threads, providers=providers)

    def pyfunc_model(self) -> type[OnnxPyfunc]:
        """The MLflow pyfunc class of this task's exports (`engine.pyfunc`,
        `pyfunc_class`): base64 images in, one row per record of the task's
        predictions out."""
        return self._hook("pyfunc_class", "MLflow model")

    def log_model(self, onnx_path: Path, metadata: dict[str, Any]) -> Any:
        """Logs the ONNX export as this task's pyfunc into the active MLflow run.

        The registry versions it; `mlflow.pyfunc.load_model` of the champion
        answers a DataFrame of base64 images with the task's records.

        Returns:
            MLflow's `ModelInfo` (its `model_uri` is registered).
        """
        from visionops.engine.pyfunc import log_pyfunc_model

        return log_pyfunc_model(
            self.pyfunc_model(), onnx_path, metadata={"task": self.name, **metadata}
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

        The task's `thresholds` among those given go to
        `predictor.predict_batch` (the predictor's defaults where not given);
        the others are ignored (a classifier has none).

        Args:
            predictor: What `predictor()` returned.
            frames: uint8 (H, W, 3) BGR images.
            timing: When given, receives the milliseconds of each stage.
            **thresholds: `conf`, `iou`, `max_det`.

        Returns:
            One prediction per frame, in order.
        """
        taken = {k: v for k, v in thresholds.items() if k in self.thresholds}
        return predictor.predict_batch(frames, timing=timing, **taken)

    def batch_output(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> BatchOutput:
        """What a batch run writes per image for this task (`batch_outputs`)."""
        output = self._hook("batch_outputs", "batch outputs")
        return output(out_dir, names, folder, files)

    def video_output(self, names: Sequence[str], tracker: str) -> VideoOutput:
        """What a batch run writes per frame of one video (`video_outputs`);
        `tracker` names Ultralytics' tracker for tasks that track."""
        return self._hook("video_outputs", "video outputs")(names, tracker)

    def render(
        self, frame: np.ndarray, prediction: Any, names: Mapping[int, str]
    ) -> np.ndarray:
        """A copy of a BGR frame with the prediction drawn on it (`renderer`)."""
        return self._hook("renderer", "renderer")(frame, prediction, names)

    def serving(self) -> Serving | None:
        """How the service serves this task's models (`serving_spec`); None: not
        served yet."""
        return None if self.serving_spec is None else _attribute(self.serving_spec)

    def answer(
        self, prediction: Any, names: Mapping[int, str], **parameters: Any
    ) -> dict[str, Any]:
        """The task's share of the service's answer for one image.

        Args:
            prediction: What `predict` returned for the image.
            names: Class names by index.
            **parameters: The request's values of `Serving.parameters`.

        Returns:
            The fields of `Serving.response`.
        """
        return self._hook("answerer", "endpoint")(prediction, names, **parameters)

    def review_export(self, root: Path, class_names: Sequence[str]) -> ReviewExport:
        """A labelling batch of this task's images in `root`, its pre-labels in
        the dataset's own format (`review_exporter`)."""
        return self._hook("review_exporter", "labelling batch")(root, class_names)

    def prelabels(self, predictions: Mapping[str, Any]) -> list[PreLabel]:
        """The task's answer for one image (what its endpoint returned) as a
        labeller's pre-labels (`review_exporter`)."""
        return self._hook("review_exporter", "labelling batch").prelabels(predictions)

    def summary(self, prediction: Any, names: Mapping[int, str]) -> dict[str, Any]:
        """One prediction in a few JSON-able figures, for its prediction record
        (`visionops.feedback`) and the selection policies that read it.

        Every task's summary has `classes` (class name -> objects found; the top
        class for a classifier) and `confidences` (class name -> the confidences
        a threshold decides on, highest first); a task adds its own keys (a
        classifier's `top`, `probabilities` and `margin`, top-1 minus top-2).

        Args:
            prediction: What `predict` returned for the image.
            names: Class names by index.
        """
        return self._hook("summarizer", "prediction summary")(prediction, names)

    def prediction_features(
        self, prediction: Any, names: Mapping[int, str]
    ) -> dict[str, float | str]:
        """One prediction as flat per-image figures, for drift and records
        (`featurizer`).

        Returns:
            `confidence` (the image's: highest box confidence, top-1
            probability), `top_class` (a class name, or `none`) and the task's
            own numbers (counts, margins, pixel shares per class).
        """
        return self._hook("featurizer", "prediction features")(prediction, names)

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

    def _hook(self, attribute: str, lacks: str) -> Any:
        """What the `module:attribute` path in a hook attribute names (imported
        now).

        Raises:
            TaskError: The attribute is None: the task has no such `lacks` yet.
        """
        path = getattr(self, attribute)
        if path is None:
            raise TaskError(f"The {self.name} task has no {lacks} yet.")
        return _attribute(path)


def _attribute(path: str) -> Any:
    """The attribute a `module:attribute` path names, its module imported now."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def evaluation_html(
    report: EvalReport, plot_dir: Path, label: Callable[[str], str] = str
) -> str:
    """Metrics, per-class rows and the normalised confusion matrix as one HTML page.

    The default page of `Task.evaluation_html`; it reads only the report's fields,
    so the tasks need not import the training package (which imports them).
    `label` gives a metric's display name (`Task.metric_label`).
    """
    import base64
    import html

    metrics = "".join(
        f"<tr><th>{html.escape(label(k))}</th><td>{v:.4f}</td></tr>"
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
        side_files: The folder and suffix of the file written per image
            (`side_file`: detection's label files, segmentation's masks); None
            when the task writes none.
    """

    columns: tuple[str, ...]
    counts_title: str
    side_files: ClassVar[tuple[str, str] | None] = None

    def __init__(
        self, out_dir: Path, names: Sequence[str], folder: Path, files: Sequence[Path]
    ) -> None:
        """Keeps where outputs go, the class names and the run's input files."""
        self.out_dir = out_dir
        self.names = list(names)
        self.folder = folder
        self.files = list(files)
        # Each image's side file relative to `out_dir`, as its JSON record names it.
        self.side_paths = (
            side_file_paths(self.files, folder, *self.side_files)
            if self.side_files
            else []
        )

    def side_file(self, index: int) -> Path:
        """Where the side file of image `index` goes, its folder made."""
        path = self.out_dir / self.side_paths[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

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
