"""Classification in a prediction record: the top class, probabilities, margin."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from visionops.engine.onnx import _name

TOP_K = 5  # probabilities kept per record: a 1,000-class model stays one short line


def summary(prediction: Any, names: Mapping[int, str]) -> dict[str, Any]:
    """The most probable class, the `TOP_K` highest probabilities and the margin.

    Args:
        prediction: A `Classification`.
        names: Class names by index.

    Returns:
        `{"top", "classes": {top: 1}, "confidences": {top: [p]},
        "probabilities": {name: p}, "margin"}`, the margin being top-1 minus
        top-2 probability (1.0 with one class); figures rounded to 4 digits.
    """
    ids, probabilities = prediction.top(TOP_K)
    ranked = [
        (_name(names, i), round(p, 4))
        for i, p in zip(ids.tolist(), probabilities.tolist(), strict=True)
    ]
    top, first = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    return {
        "top": top,
        "classes": {top: 1},
        "confidences": {top: [first]},
        "probabilities": dict(ranked),
        "margin": round(first - second, 4),
    }
