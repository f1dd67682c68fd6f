"""Image tagging, a toy task: image-level classes in a layout of its own.

Only its data side exists (ingestion, validation, the dataset card); the rest
of what a task defines refuses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from visionops.data.manifest import IMAGE_CLASS
from visionops.engine.task import Task, TaskError

if TYPE_CHECKING:
    from visionops.data.manifest import Item
    from visionops.data.validate import CheckedLabels, LabelCheck
    from visionops.engine.task import EvalJob, Scores


class TagTask(Task):
    """One tag (class) per image, kept beside the image rather than as folders."""

    name = "tag"
    ultralytics_task = "classify"
    model_suffix = "-cls"
    default_model_name = "image-tagger"
    description = "Tags."
    val_metrics_names = ("top1",)
    default_metric = "top1"
    headline_metrics = ("top1",)
    pipelines = frozenset()
    label_kinds = (IMAGE_CLASS,)

    @property
    def counts_key(self) -> str:
        """Tagged images per class."""
        return "images_per_class"

    def check_labels(self, item: Item, check: LabelCheck) -> CheckedLabels:
        """An item needs a known class: its tag."""
        from visionops.data.validate import CheckedLabels, Reject

        if item.class_id is None or not 0 <= item.class_id < check.num_classes:
            raise Reject("label_missing", "no tag")
        return CheckedLabels(item)

    def val_metrics(self, results: Mapping[str, Any]) -> dict[str, float]:
        """Not trained: no validation metrics."""
        raise TaskError("The tag task is not trained.")

    def test_metric_names(
        self, class_names: Sequence[str], positive_class: str | None = None
    ) -> list[str]:
        """Top-1 accuracy, whatever the classes."""
        return ["top1"]

    def measure(self, job: EvalJob) -> Scores:
        """Not evaluated."""
        raise TaskError("The tag task has no evaluation.")

    def predictor(
        self, onnx_path: Any, *, threads: int = 1, providers: list[str] | None = None
    ) -> Any:
        """No predictor."""
        raise TaskError("The tag task has no predictor.")

    def pyfunc_model(self) -> Any:
        """No MLflow model."""
        raise TaskError("The tag task has no MLflow model.")
