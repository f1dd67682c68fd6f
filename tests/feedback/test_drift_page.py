"""A drift report's page opens offline in a real headless Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from visionops.config import DriftSettings
from visionops.feedback.drift import DRIFT_HTML, write_report
from visionops.feedback.features import Pca, Reference

pytest_plugins = ["tests.browser"]  # `page`: a headless Chromium page


def _rows(count: int, brightness: float, split: str | None = None) -> list[dict]:
    rows = []
    for i in range(count):
        row = {
            "width": 640.0,
            "height": 480.0 + (i % 3),
            "brightness": brightness + 0.01 * (i % 7),
            "contrast": brightness / 2 + 0.005 * (i % 5),
            "sharpness": 300 * brightness + i % 11,
            "confidence": 0.6 + 0.01 * (i % 9),
            "top_class": "board",
            "emb_0": brightness * 10 + 0.1 * (i % 6),
            "emb_1": 0.1 * (i % 4),
        }
        if split:
            row["split"] = split
        rows.append(row)
    return rows


def test_drift_page_renders_offline(page, tmp_path: Path) -> None:  # noqa: F811
    pca = Pca(mean=np.zeros(2, np.float32), components=np.eye(2, dtype=np.float32))
    reference = Reference(
        "detect", ["board"], pca, _rows(15, 0.3, "val") + _rows(15, 0.3, "test")
    )
    result = write_report(_rows(20, 0.7), reference, DriftSettings(), tmp_path)
    assert result.verdict == "drift"
    outside: list[str] = []

    def handle(route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:  # anything else would not open offline
            outside.append(url)
            route.abort()

    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.route("**/*", handle)
    page.goto((tmp_path / DRIFT_HTML).as_uri())
    assert page.locator("#verdict").inner_text().startswith("Verdict: drift")
    assert "brightness" in page.locator("#verdict").inner_text()
    # Evidently's own widgets drew themselves from the inlined scripts.
    page.get_by_text("Drift in column 'brightness'").first.wait_for(timeout=20_000)
    assert outside == []
    assert errors == []
