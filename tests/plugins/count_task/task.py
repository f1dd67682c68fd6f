"""The counting task: the detector's model and predictor, its own identity.

It reuses detection's parts (box labels, the ONNX detector, the renderer) and
brings its own name, dataset layout, endpoint, view and batch outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from visionops.engine.task import Serving
from visionops.tasks.detect.task import DetectTask


class CountAnswer(BaseModel):
    """How many objects."""

    objects: int


class CountTask(DetectTask):
    """Objects counted per image; its datasets keep counts, not boxes."""

    name = "count"
    default_model_name = "object-counter"
    description = "Counts the objects a YOLO detector finds."
    # Ultralytics cannot train from its layout (counts, no boxes): served and
    # run in batch only.
    pipelines = frozenset({"batch"})
    thresholds = ("conf",)
    batch_outputs = "count_task.batch:CountBatchOutput"

    def serving(self) -> Serving:
        """`/count`: the number of objects, at least `at_least`."""
        return Serving(
            endpoint="count",
            response=CountAnswer,
            view=Path(__file__).with_name("view.js"),
            parameters={"at_least": (int, Field(0, ge=0))},
        )

    def answer(
        self, prediction: Any, names: Mapping[int, str], **parameters: Any
    ) -> dict[str, Any]:
        """The number of boxes, raised to `at_least`."""
        return {"objects": max(len(prediction.boxes), parameters["at_least"])}
