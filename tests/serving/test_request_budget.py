"""One request's images may decode to a bounded number of pixels together."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from visionops.serving import limits
from visionops.serving.uploads import _decode_all


def _png(width: int, height: int) -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return data.tobytes()


def test_images_past_the_request_budget_are_refused_undecoded(monkeypatch) -> None:
    # A 6 Mpx budget: two 2.4 Mpx images fit, the third would not.
    monkeypatch.setattr(limits, "MAX_REQUEST_PIXELS", 6_000_000)
    flat = _png(2000, 1200)  # a few KB that decode to 7.2 MB
    decoded = _decode_all([(f"{i}.png", flat) for i in range(4)])
    frames = [d for d in decoded if hasattr(d, "frame")]
    refused = [d for d in decoded if not hasattr(d, "frame")]
    assert len(frames) == 2 and len(refused) == 2
    assert all(e.status == 413 for e in refused)
    assert "6 Mpx together (MAX_REQUEST_PIXELS)" in refused[0].message
    assert "2000x1200" in refused[0].message


def test_one_image_up_to_the_per_image_limit_fits_the_budget() -> None:
    budget = limits.PixelBudget()
    frame = limits.decode_image(_png(4000, 2500), budget)
    assert frame.shape == (2500, 4000, 3)
    assert budget.left == limits.MAX_REQUEST_PIXELS - 10_000_000
    with pytest.raises(limits.InputError) as caught:
        limits.decode_image(_png(5, 5), limits.PixelBudget(10))
    assert caught.value.status == 413
