"""What every task defines: models, metrics, evaluation, predictor and view hooks."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from visionops.data.version import DatasetVersion
    from visionops.training.evaluate import EvalReport

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
        """Measures `.pt` weights on one split; plots land in `out_dir`.

        Raises:
            ValueError: The dataset has no such split (or no images in it).
        """

    def evaluation_html(self, report: EvalReport, plot_dir: Path) -> str:
        """The test evaluation as one HTML page for the ZenML dashboard."""
        from visionops.training.evaluate import evaluation_html

        return evaluation_html(report, plot_dir)

    # --- inference (evaluation latency, batch, service) ------------------------------

    @abstractmethod
    def predictor(
        self, onnx_path: Path, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """The ONNX Runtime predictor of this task's exports.

        It has `names`, `imgsz`, `predict(image_bgr)` and `predict_batch(frames)`.
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

    def records(self, prediction: Any, names: Mapping[int, str]) -> list[dict]:
        """One JSON-ready dict per predicted item (box, class, instance)."""
        raise TaskError(f"The {self.name} task has no response schema yet.")

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
