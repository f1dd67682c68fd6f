"""The five box metrics detection reports (and segmentation, per box)."""

from __future__ import annotations

METRICS = ("map50_95", "map50", "precision", "recall", "f1")


def box_metrics(
    map50_95: float, map50: float, precision: float, recall: float
) -> dict[str, float]:
    """The five box metrics (`METRICS`), F1 from precision and recall."""
    precision, recall = float(precision), float(recall)
    return {
        "map50_95": float(map50_95),
        "map50": float(map50),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall)
        if precision + recall
        else 0.0,
    }
