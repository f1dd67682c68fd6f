"""The low-confidence check of a drift report: a real rise is named, a rise within
what a small test split can measure is not."""

from __future__ import annotations

import numpy as np

from visionops.config import DriftSettings
from visionops.feedback.drift import drift_report
from visionops.feedback.features import Pca, Reference


def _rows(confidences: list[float], split: str | None = None) -> list[dict]:
    rows = []
    for i, confidence in enumerate(confidences):
        row = {
            "width": 640.0,
            "height": 480.0 + (i % 3),
            "brightness": 0.4 + 0.01 * (i % 7),
            "contrast": 0.2 + 0.005 * (i % 5),
            "sharpness": 120.0 + i % 11,
            "confidence": confidence,
            "top_class": "board",
            "emb_0": 0.1 * (i % 6),
            "emb_1": 0.1 * (i % 4),
        }
        if split:
            row["split"] = split
        rows.append(row)
    return rows


def _reference(test_confidences: list[float]) -> Reference:
    pca = Pca(mean=np.zeros(2, np.float32), components=np.eye(2, dtype=np.float32))
    val = _rows([0.6 + 0.01 * i for i in range(20)], "val")
    return Reference("detect", ["board"], pca, val + _rows(test_confidences, "test"))


def test_a_rise_of_low_confidence_beyond_noise_is_drift() -> None:
    reference = _reference([0.7 + 0.01 * i for i in range(30)])  # none below 0.5
    current = _rows([0.3] * 20 + [0.7] * 20)  # half below 0.5
    result, _ = drift_report(current, reference, DriftSettings())
    assert "low_confidence" in result.drifted
    assert result.low_confidence["current"] == 0.5
    assert result.low_confidence["reference_test"] == 0.0


def test_a_rise_within_a_small_test_splits_noise_is_not() -> None:
    # 4 of 9 test images below 0.5 (0.44, measured to about +-0.3); 80 % now.
    reference = _reference([0.1, 0.2, 0.3, 0.4, 0.6, 0.6, 0.7, 0.7, 0.8])
    current = _rows([0.3] * 32 + [0.7] * 8)
    result, _ = drift_report(current, reference, DriftSettings())
    low, margin = result.low_confidence, DriftSettings().low_confidence_margin
    assert low["current"] - low["reference_test"] > margin
    assert low["noise"] > 0.25
    assert "low_confidence" not in result.drifted
