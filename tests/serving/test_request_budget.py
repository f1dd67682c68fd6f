"""What one request may take: its images decode to a bounded number of pixels
together, and the issue's two worst requests each grow a real `bentoml serve` by
less than 1.5 GB, answered 200 or 413."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import requests

from tests.conftest import SEG_IMGSZ, SEG_NAMES
from tests.pipelines.test_deployment_pipeline import stop_server
from tests.servers import free_port
from tests.serving import test_web_ui
from visionops.app.dashboards import port_open
from visionops.serving import limits
from visionops.serving.uploads import _decode_all

served = test_web_ui.served  # a detector Bento, served
GROWTH_LIMIT = 1.5e9  # bytes of RSS, all the server's processes together
# Past this the sampler stops the server: a failing request must not take the
# memory of a machine shared with other work.
RUNAWAY = 4e9
FLAT_40MPX = (8000, 5000)  # width, height: exactly `limits.MAX_PIXELS`


def _png(width: int, height: int) -> bytes:
    """A black PNG: a few hundred KB at most that decode to `width x height x 3`."""
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


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for process in (root, *root.children(recursive=True)):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class _PeakRss:
    """Samples the server's RSS while a request runs; stops a runaway server."""

    def __init__(self, port: int) -> None:
        from visionops.serving.bento import pid_file

        self.pid = int(pid_file(port).read_text())
        self.port = port
        self.baseline = _tree_rss(self.pid)
        self.peak = self.baseline
        self.runaway = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            with_children = _tree_rss(self.pid)
            self.peak = max(self.peak, with_children)
            if with_children - self.baseline > RUNAWAY:
                self.runaway = True
                stop_server(self.port)
                return

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.5)  # what the answer's last allocations add
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _post(url: str, files: list[tuple[str, tuple]], **fields) -> requests.Response:
    return requests.post(url, files=files, data=fields, timeout=600)


@pytest.fixture(scope="module")
def served_segmenter(seg_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Bento around the tiny segmenter, served on a free loopback port."""
    from visionops.engine.onnx import export_onnx
    from visionops.serving.bento import build_bento, save_model, start_server

    lineage = {
        "model_name": "memory-segmenter",
        "task": "segment",
        "class_names": list(SEG_NAMES.values()),
        "serving_imgsz": SEG_IMGSZ,
    }
    onnx = export_onnx(seg_weights, SEG_IMGSZ, tmp_path_factory.mktemp("seg-onnx"))
    bento = build_bento(
        save_model("memory-segmenter", onnx, seg_weights, lineage), lineage
    )
    port = free_port()
    try:
        yield {"url": start_server(str(bento.tag), port=port), "port": port}
    finally:
        stop_server(port)
        assert not port_open(port)


def _warm(url: str, path: str, field: str) -> None:
    """One small request first, so the baseline holds the loaded model."""
    small = _png(640, 480)
    response = _post(f"{url}{path}", [(field, ("warm.png", small, "image/png"))])
    assert response.status_code == 200, response.text


def test_a_batch_of_64_flat_40mpx_pngs_takes_under_the_budget(served) -> None:
    url = served["url"]
    port = int(url.rsplit(":", 1)[1])
    _warm(url, "/detect_batch", "images")
    flat = _png(*FLAT_40MPX)
    files = [("images", (f"{i}.png", flat, "image/png")) for i in range(64)]
    with _PeakRss(port) as rss:
        response = _post(f"{url}/detect_batch", files)
    print(f"/detect_batch 64 x 40 Mpx: RSS growth {rss.growth / 1e6:.0f} MB")
    assert not rss.runaway, "the server grew past 4 GB and was stopped"
    assert response.status_code in (200, 413), response.text
    assert rss.growth < GROWTH_LIMIT, f"{rss.growth / 1e9:.2f} GB"
    if response.status_code == 200:
        # The first images fit the request's pixel budget; the rest are refused.
        answers = response.json()
        fit = limits.MAX_REQUEST_PIXELS // limits.MAX_PIXELS
        assert len(answers) == 64
        assert all("error" not in a for a in answers[:fit])
        assert all("MAX_REQUEST_PIXELS" in a["error"] for a in answers[fit:])


def test_segment_at_conf_0_on_40mpx_takes_under_the_budget(served_segmenter) -> None:
    url, port = served_segmenter["url"], served_segmenter["port"]
    _warm(url, "/segment", "image")
    image = [("image", ("flat.png", _png(*FLAT_40MPX), "image/png"))]
    with _PeakRss(port) as rss:
        response = _post(f"{url}/segment", image, conf="0", iou="1", max_det="1000")
    print(f"/segment conf=0 on 40 Mpx: RSS growth {rss.growth / 1e6:.0f} MB")
    assert not rss.runaway, "the server grew past 4 GB and was stopped"
    assert response.status_code in (200, 413), response.text
    assert rss.growth < GROWTH_LIMIT, f"{rss.growth / 1e9:.2f} GB"
    if response.status_code == 200:
        assert response.json()["image"] == {"width": 8000, "height": 5000}
    else:  # 413 names the limit
        assert "(MAX_MASK_PIXELS)" in response.json()["error"]
