"""The web page in a real headless Chromium against a real `bentoml serve`."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.servers import free_port
from tests.test_deployment_pipeline import stop_server
from visionops.dashboards import port_open

MODEL = "web-ui-detector"
IMGSZ = 128  # the size `tiny_weights` was trained at
# The slider's lowest value; the 2-epoch `tiny_weights` scores its best boxes ~0.012.
SLIDER_CONF = "0.01"
LINEAGE = {
    "model_name": MODEL,
    "mlflow_version": "5",
    "zenml_model_version": "2",
    "dataset_hash": "0ddba11",
    "serving_imgsz": IMGSZ,
    "test_metrics": {"map50_95": 0.1},
}
# Nothing in the browser reaches beyond loopback: no updates, sync, QUIC or proxy.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]


def _chromium() -> str:
    """The Debian `chromium` binary; in CI (`CI` set) its absence is a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = (
        "Debian `chromium` is not installed; to run this test: sudo apt-get install "
        "-y --no-install-recommends chromium (`make test` does it as root)"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def served(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Bento around `tiny_weights`, served on a free loopback port."""
    from visionops.inference import export_onnx
    from visionops.serving.bento import build_bento, save_model, start_server

    onnx = export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("web-ui-onnx"))
    model_tag = save_model(MODEL, onnx, tiny_weights, LINEAGE)
    bento = build_bento(model_tag, LINEAGE)
    port = free_port()
    try:
        url = start_server(str(bento.tag), port=port)
        yield {"url": url, "model_tag": model_tag}
    finally:
        stop_server(port)
        assert not port_open(port)


@pytest.fixture
def page(tmp_path: Path):
    """A page in a fresh headless Chromium profile, driven through Playwright."""
    chromium = _chromium()
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            # Crash reports and dconf would otherwise land in ~/.config, ~/.cache.
            env={
                **os.environ,
                "HOME": str(tmp_path),
                "XDG_CONFIG_HOME": str(tmp_path / "config"),
                "XDG_CACHE_HOME": str(tmp_path / "cache"),
            },
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


def test_upload_draws_boxes_counts_and_status(
    served: dict, page, sample_dir: Path, tmp_path: Path
) -> None:
    image = sorted(sample_dir.rglob("*.jpg"))[0]
    width, height = Image.open(image).size
    page.goto(f"{served['url']}/ui/")
    page.wait_for_function(
        "document.getElementById('model').textContent.includes('MLflow')"
    )
    header = page.inner_text("#model")
    assert MODEL in header and served["model_tag"] in header and "MLflow v5" in header

    # A low confidence through the slider, the way a person drags it.
    page.eval_on_selector(
        "#conf",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
        " el.dispatchEvent(new Event('change')); }",
        SLIDER_CONF,
    )
    assert page.inner_text("#confv") == SLIDER_CONF
    page.set_input_files("#file", str(image))
    page.wait_for_function(
        "Number(document.body.dataset.boxes || 0) > 0", timeout=60_000
    )
    boxes = int(page.evaluate("document.body.dataset.boxes"))

    status = page.inner_text("#status")
    match = re.fullmatch(
        r"(\d+) boxes · server ([\d.]+) ms · round trip (\d+) ms", status.strip()
    )
    assert match, status
    assert int(match[1]) == boxes and float(match[2]) > 0
    rows = page.eval_on_selector_all(
        "#counts tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows[0] == ["class", "count"]
    assert rows[1:] == [["board", str(boxes)]]
    canvas = page.evaluate(
        "[document.getElementById('canvas').width,"
        " document.getElementById('canvas').height]"
    )
    assert canvas == [width, height]

    shot = tmp_path / "web-ui.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as png:
        pixels = np.asarray(png.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 800
    assert pixels.std() > 20, "the screenshot is blank"


def test_a_bad_file_shows_the_error(served: dict, page, tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    page.goto(f"{served['url']}/ui/")
    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status .err", timeout=30_000)
    message = page.inner_text("#status")
    assert message.startswith("415:") and "not a readable image" in message
    assert page.evaluate("document.body.dataset.boxes") is None
