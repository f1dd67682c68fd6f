"""Classification in the service: `/classify` answers the most probable classes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from visionops.engine.task import Serving


class ClassPrediction(BaseModel):
    """One class and its probability."""

    class_id: int
    class_name: str
    probability: float


class ClassifyAnswer(BaseModel):
    """The most probable classes and their probabilities, highest first."""

    predictions: list[ClassPrediction]


SERVING = Serving(
    endpoint="classify",
    response=ClassifyAnswer,
    view=Path(__file__).with_name("view.js"),
    parameters={"top_k": (int, Field(5, ge=1, le=1000))},
)


def answer(prediction: Any, names: Mapping[int, str], top_k: int) -> dict[str, Any]:
    """The `top_k` most probable classes (`Classification.to_records`)."""
    return {"predictions": prediction.to_records(names, k=top_k)}
