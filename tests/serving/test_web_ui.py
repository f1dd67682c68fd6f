"""The web page in a real headless Chromium.

Detection runs against a real `bentoml serve` of a tiny detector. The classify and
segment views are checked with Playwright routes that answer `/info` (with what the
service says of that task), the task's view (its module from the task's folder)
and the task's endpoint with canned JSON of the documented response shapes: that
tests the page's rendering logic honestly, not the models behind those endpoints.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pipelines.test_deployment_pipeline import stop_server
from tests.servers import free_port
from visionops.app.dashboards import port_open

pytest_plugins = ["tests.browser"]  # `page`: a headless Chromium page

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
INDEX = Path(__file__).parents[2] / "src/visionops/serving/static/index.html"
# WCAG AA for normal text.
MIN_CONTRAST = 4.5


@pytest.fixture(scope="module")
def served(tiny_weights: Path, tmp_path_factory: pytest.TempPathFactory):
    """A Bento around `tiny_weights`, served on a free loopback port."""
    from visionops.engine.onnx import export_onnx
    from visionops.serving.bento import build_bento, save_model, start_server

    onnx = export_onnx(tiny_weights, IMGSZ, tmp_path_factory.mktemp("web-ui-onnx"))
    model_tag = save_model(MODEL, onnx, tiny_weights, LINEAGE)
    bento = build_bento(model_tag, LINEAGE)
    port = free_port()
    try:
        url = start_server(str(bento.tag), port=port)
        yield {"url": url, "model_tag": model_tag, "bento_tag": str(bento.tag)}
    finally:
        stop_server(port)
        assert not port_open(port)


def _open(page, url: str) -> None:
    """Opens the page and waits until it has read `/info`."""
    page.goto(f"{url}/ui/")
    page.evaluate("window.visionops.ready")


def _set_conf(page, value: str) -> None:
    """Moves the confidence slider the way a person drags it."""
    page.eval_on_selector(
        "#conf",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input'));"
        " el.dispatchEvent(new Event('change')); }",
        value,
    )


def _sample_image(sample_dir: Path) -> Path:
    return sorted(sample_dir.rglob("*.jpg"))[0]


def _upload_and_wait(page, image: Path) -> int:
    page.set_input_files("#file", str(image))
    page.wait_for_function(
        "Number(document.body.dataset.boxes || 0) > 0", timeout=60_000
    )
    return int(page.evaluate("document.body.dataset.boxes"))


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of sRGB colours (..., 3) in 0-255."""
    c = rgb / 255.0
    linear = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return linear @ np.array([0.2126, 0.7152, 0.0722])


def _contrast(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    la, lb = _luminance(a), _luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def _check_label(pixels: np.ndarray, label: dict) -> float:
    """Asserts a drawn label is a solid fill with legible text; returns the contrast.

    Args:
        pixels: The drawn image, (H, W, 3) RGB.
        label: The page's record of the label: text, x, y, w, h and fill (#rrggbb).
    """
    x, y, w, h = (int(label[k]) for k in ("x", "y", "w", "h"))
    patch = pixels[y : y + h, x : x + w].reshape(-1, 3).astype(np.float64)
    fill = np.array([int(label["fill"][i : i + 2], 16) for i in (1, 3, 5)], float)
    distance = np.abs(patch - fill).max(axis=1)
    # Mostly the fill colour, whatever the image underneath.
    assert (distance <= 12).mean() > 0.5, (label, (distance <= 12).mean())
    text = patch[distance > 60]
    assert len(text) > 0.03 * len(patch), (label, len(text), len(patch))
    # The glyphs' cores (antialiased edges aside) against the fill.
    return float(np.percentile(_contrast(text, fill), 90))


# A page served without a model: Playwright answers the page, `/info` (the model
# card given, and what the service says of `task`: its endpoint, fields and view),
# the task's view and its endpoint. The origin is loopback and no request leaves
# the browser.
def _routed(
    page, task: str, card: dict, answer: dict, key: str = "", seen: list | None = None
) -> str:
    """`key`: `/info` and the endpoint want `Authorization: Bearer <key>` (401 in
    the service's words otherwise); `seen` collects the calls' headers."""
    from visionops.serving.endpoints import describe
    from visionops.tasks import get_task

    origin = f"http://127.0.0.1:{free_port()}"
    html = INDEX.read_text()
    info = {**card, **describe(get_task(task))}
    view = get_task(task).serving().view.read_text()

    def handle(route) -> None:
        path = route.request.url.removeprefix(origin).split("?")[0]
        sent = route.request.headers.get("authorization", "")
        if seen is not None and path in ("/info", info["endpoint"]):
            seen.append((path, sent))
        if key and path in ("/info", info["endpoint"]) and sent != f"Bearer {key}":
            route.fulfill(status=401, json={"error": "This service needs a key."})
        elif path == "/ui/":
            route.fulfill(status=200, content_type="text/html", body=html)
        elif path == "/info":
            route.fulfill(status=200, json=info)
        elif path == info["view"]:
            route.fulfill(status=200, content_type="text/javascript", body=view)
        elif path == info["endpoint"]:
            route.fulfill(status=200, json=answer)
        else:
            route.fulfill(status=404, json={"error": f"No route {path}."})

    page.route(f"{origin}/**", handle)
    return origin


def _canvas(page) -> np.ndarray:
    """The page's drawn canvas, (H, W, 3) RGB."""
    url = page.evaluate("document.getElementById('canvas').toDataURL('image/png')")
    data = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as png:
        return np.asarray(png.convert("RGB"))


def _image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_upload_draws_boxes_counts_and_status(
    served: dict, page, sample_dir: Path, tmp_path: Path
) -> None:
    image = _sample_image(sample_dir)
    width, height = Image.open(image).size
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    _open(page, served["url"])
    header = page.inner_text("header")
    assert MODEL in header and "version 2" in header and "MLflow v5" in header
    assert "mAP50-95 0.100" in header and served["model_tag"] in header
    assert page.evaluate("document.body.dataset.task") == "detect"
    info = page.request.post(f"{served['url']}/info", data={}).json()
    if "bento_tag" in info:  # a service that names its Bento: the tag MLflow logs
        assert info["bento_tag"] == served["bento_tag"]
        assert f"Bento {served['bento_tag']}" in header

    _set_conf(page, SLIDER_CONF)
    assert page.inner_text("#confv") == SLIDER_CONF
    boxes = _upload_and_wait(page, image)

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
    assert page.is_hidden("#empty") and page.is_visible("#canvas")

    shot = tmp_path / "web-ui.png"
    page.screenshot(path=str(shot), full_page=True)
    with Image.open(shot) as png:
        pixels = np.asarray(png.convert("RGB"), dtype=np.float32)
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 800
    assert pixels.std() > 20, "the screenshot is blank"
    # Works offline: everything the page loads comes from the service itself.
    outside = [u for u in urls if not u.startswith((served["url"], "data:", "blob:"))]
    assert not outside and len(urls) >= 3, urls


def test_the_page_says_what_is_recorded_and_its_calls_are(
    served: dict, page, sample_dir: Path
) -> None:
    from visionops.core.env import state_dir
    from visionops.feedback.store import FeedbackStore

    image = _sample_image(sample_dir)
    _open(page, served["url"])
    assert "face-blurred" in page.inner_text("#recorded")
    _set_conf(page, SLIDER_CONF)  # the tiny model's boxes score low
    _upload_and_wait(page, image)
    # The server `start_server` started records into this state folder's store.
    records = [
        r
        for r in FeedbackStore(state_dir() / "feedback").records()
        if r["image"]["name"] == "upload.jpg"  # the name the page sends
    ]
    assert records and records[-1]["source"] == "service:/detect"
    assert records[-1]["model"]["bento"] == served["bento_tag"]
    with Image.open(image) as photo:
        assert records[-1]["image"]["width"] == photo.width


def test_empty_state_docs_link_and_favicon(served: dict, page) -> None:
    _open(page, served["url"])
    assert page.is_visible("#empty") and page.is_hidden("#canvas")
    empty = page.inner_text("#empty")
    assert "Drop an image" in empty and "webcam" in empty
    assert "the model's boxes are drawn on it" in " ".join(empty.split())
    assert page.is_disabled("#download")

    docs = page.get_attribute("#docs", "href")
    answer = page.request.get(f"{served['url']}{docs}")
    assert answer.ok and "swagger" in answer.text().lower()

    favicon = page.get_attribute("link[rel=icon]", "href")
    assert favicon.startswith("data:image/svg+xml")
    size = page.evaluate(
        "href => new Promise(ok => { const i = new Image();"
        " i.onload = () => ok([i.naturalWidth, i.naturalHeight]);"
        " i.onerror = () => ok(null); i.src = href; })",
        favicon,
    )
    assert size and size[0] > 0 and size[1] > 0


def test_labels_read_on_a_solid_fill_and_the_result_downloads(
    served: dict, page, sample_dir: Path, tmp_path: Path
) -> None:
    image = _sample_image(sample_dir)
    _open(page, served["url"])
    _set_conf(page, SLIDER_CONF)
    boxes = _upload_and_wait(page, image)
    labels = page.evaluate("window.visionops.labels")
    assert len(labels) == boxes

    with page.expect_download() as event:
        page.click("#download")
    download = event.value
    assert download.suggested_filename == "visionops-detect-result.png"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with Image.open(saved) as png:
        assert png.format == "PNG"
        assert png.size == Image.open(image).size
        drawn = np.asarray(png.convert("RGB"))
    # The last label drawn is on top of everything else.
    assert _check_label(drawn, labels[-1]) >= MIN_CONTRAST


def test_labels_scale_with_the_image_and_read_on_white_and_black(
    page, tmp_path: Path
) -> None:
    """Canned detections (see the module docstring) on plain white and black images."""
    heights = {}
    for size, color in (((320, 240), (255, 255, 255)), ((1600, 1200), (0, 0, 0))):
        w, h = size
        # One box per palette colour, in two columns, labels clear of each other.
        answer = {
            "detections": [
                {
                    "class_id": c,
                    "class_name": f"class{c}",
                    "confidence": 0.9,
                    "box": {
                        "x1": w * (0.05 + 0.5 * (c % 2)),
                        "y1": h * (0.12 + 0.17 * (c // 2)),
                        "x2": w * (0.45 + 0.5 * (c % 2)),
                        "y2": h * (0.24 + 0.17 * (c // 2)),
                    },
                }
                for c in range(10)
            ],
            "counts": {f"class{c}": 1 for c in range(10)},
            "timing_ms": {"total": 1.0},
        }
        origin = _routed(page, "detect", {}, answer)
        _open(page, origin)
        upload = _image(tmp_path / f"{w}.png", size, color)
        page.set_input_files("#file", str(upload))
        page.wait_for_function("document.body.dataset.boxes === '10'")
        labels = page.evaluate("window.visionops.labels")
        pixels = _canvas(page)
        assert pixels.shape[:2] == (h, w)
        for label in labels:
            assert _check_label(pixels, label) >= MIN_CONTRAST
        heights[w] = labels[0]["h"] / h
    # Label height follows the image: the same share of a small and a large image.
    assert 0.04 < heights[1600] < 0.1
    assert heights[1600] == pytest.approx(heights[320], rel=0.35)


def test_a_bad_file_shows_the_error_and_clears_the_result(
    served: dict, page, sample_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    expected = page.request.post(
        f"{served['url']}/detect",
        multipart={
            "image": {
                "name": "upload.jpg",
                "mimeType": "image/jpeg",
                "buffer": bad.read_bytes(),
            }
        },
    )
    assert expected.status == 415, expected.text()

    _open(page, served["url"])
    _set_conf(page, SLIDER_CONF)
    _upload_and_wait(page, _sample_image(sample_dir))
    assert not page.is_disabled("#download")

    page.set_input_files("#file", str(bad))
    page.wait_for_selector("#status .err", timeout=30_000)
    message = page.inner_text("#status").strip()
    # The service's one error shape, an object with one sentence, shown as it is.
    answer = expected.json()
    assert isinstance(answer, dict) and list(answer) == ["error"], answer
    assert message == answer["error"].strip()
    assert "not a readable image" in message and message.endswith(".")
    assert page.get_attribute("#status .err", "data-status") == "415"
    # Nothing of the previous image is left on screen.
    assert page.evaluate("document.body.dataset.boxes") is None
    assert page.is_hidden("#canvas") and page.is_visible("#empty")
    assert page.inner_text("#panel") == "" and page.is_disabled("#download")


def test_webcam_frames_are_answered_one_at_a_time(
    served: dict, page, tmp_path: Path
) -> None:
    in_flight = {"now": 0, "max": 0, "sent": 0}

    def sent(request) -> None:
        if request.url.endswith("/detect"):
            in_flight["now"] += 1
            in_flight["sent"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])

    def done(request) -> None:
        if request.url.endswith("/detect"):
            in_flight["now"] -= 1

    page.on("request", sent)
    page.on("requestfinished", done)
    page.on("requestfailed", done)
    _open(page, served["url"])
    page.click("#cam")
    page.wait_for_function(
        "Number(document.body.dataset.frames || 0) >= 5", timeout=120_000
    )
    answered = int(page.evaluate("document.body.dataset.frames"))
    assert in_flight["sent"] >= answered >= 5
    assert in_flight["max"] == 1, "frames were queued, not dropped"
    live = page.inner_text("#live")
    match = re.fullmatch(r"([\d.]+) fps · (\d+) ms latency", live.strip())
    assert match and float(match[1]) > 0 and int(match[2]) > 0, live
    assert page.inner_text("#status").startswith("live · ")
    assert page.is_visible("#canvas") and page.is_hidden("#empty")
    # The fake camera's 640x480 test pattern is drawn, not a blank canvas.
    pixels = _canvas(page)
    assert pixels.shape == (480, 640, 3) and pixels.std() > 10
    page.screenshot(path=str(tmp_path / "webcam.png"))

    page.click("#cam")
    assert page.inner_text("#cam") == "Start webcam"
    while in_flight["now"]:  # the last frame's answer comes back
        page.wait_for_timeout(100)
    stopped = in_flight["sent"]
    page.wait_for_timeout(1000)
    assert in_flight["sent"] == stopped, "frames were sent after Stop"


def test_webcam_answers_are_drawn_over_the_video(page, tmp_path: Path) -> None:
    """A canned `/detect` answer (see the module docstring) over the fake camera."""
    box = {"x1": 100, "y1": 150, "x2": 500, "y2": 400}
    answer = {
        "detections": [
            {"class_id": 0, "class_name": "board", "confidence": 0.8, "box": box}
        ],
        "counts": {"board": 1},
        "timing_ms": {"total": 2.0},
    }
    origin = _routed(page, "detect", {"model_name": "m"}, answer)
    _open(page, origin)
    page.click("#cam")
    page.wait_for_function("Number(document.body.dataset.frames || 0) >= 3")
    assert page.evaluate("document.body.dataset.boxes") == "1"
    assert page.inner_text("#status").startswith("live · 1 boxes · server 2.0 ms")
    # Wait for a repaint after the answer: the overlay is redrawn on every frame.
    page.evaluate("new Promise(r => requestAnimationFrame(() => r()))")
    labels = page.evaluate("window.visionops.labels")
    assert [label["text"] for label in labels] == ["board 0.80"]
    pixels = _canvas(page)
    assert pixels.shape == (480, 640, 3)
    assert np.abs(pixels[300, 100].astype(int) - [255, 56, 56]).max() <= 12
    assert _check_label(pixels, labels[0]) >= MIN_CONTRAST
    page.click("#cam")


def test_classify_view_shows_the_top_classes_as_bars(page, tmp_path: Path) -> None:
    """Canned `/info` and `/classify` answers (see the module docstring)."""
    card = {
        "model_name": "leaf-classifier",
        "zenml_model_version": "7",
        "mlflow_version": "3",
        "bento_tag": "leaf-classifier:abc123",
        "bento_model": "leaf-classifier:def456",
        "precision": "int8",
        "test_metrics": {"top1": 0.912, "top5": 0.99},
        "metric_labels": {"top1": "top-1", "top5": "top-5"},
    }
    answer = {
        "predictions": [
            {"class_id": 2, "class_name": "rust", "probability": 0.7},
            {"class_id": 0, "class_name": "healthy", "probability": 0.2},
            {"class_id": 1, "class_name": "scab", "probability": 0.1},
        ],
        "timing_ms": {"total": 3.5},
    }
    origin = _routed(page, "classify", card, answer)
    _open(page, origin)
    header = page.inner_text("header")
    for text in ("leaf-classifier", "version 7", "MLflow v3", "INT8", "top-1 0.912"):
        assert text in header
    assert "Bento leaf-classifier:abc123" in header
    assert page.title() == "VisionOps classifier"
    assert page.is_hidden("#conf") and page.is_hidden("#blur")
    assert "most likely classes" in page.inner_text("#empty")

    page.set_input_files(
        "#file", str(_image(tmp_path / "a.png", (400, 300), (90,) * 3))
    )
    page.wait_for_function("document.body.dataset.boxes === '3'")
    assert page.inner_text("#status").startswith("top rust 0.70 · server 3.5 ms")
    bars = page.eval_on_selector_all(
        "#bars .bar-row",
        "rows => rows.map(r => [r.dataset.class, r.querySelector('.n').textContent,"
        " r.querySelector('.bar div').getBoundingClientRect().width /"
        " r.querySelector('.bar').getBoundingClientRect().width])",
    )
    assert [b[:2] for b in bars] == [
        ["rust", "0.70"],
        ["healthy", "0.20"],
        ["scab", "0.10"],
    ]
    assert [round(b[2], 2) for b in bars] == [0.7, 0.2, 0.1]
    labels = page.evaluate("window.visionops.labels")
    assert [label["text"] for label in labels] == [
        "rust 0.70",
        "healthy 0.20",
        "scab 0.10",
    ]
    pixels = _canvas(page)
    for label in labels:  # stacked, none covering another
        assert _check_label(pixels, label) >= MIN_CONTRAST
    page.screenshot(path=str(tmp_path / "classify.png"))


def test_the_page_asks_for_the_key_once_and_sends_it(page, tmp_path: Path) -> None:
    """A service with keys: the page asks once, then every call carries the key."""
    answer = {
        "predictions": [{"class_id": 0, "class_name": "rust", "probability": 0.7}]
    }
    seen: list = []
    origin = _routed(
        page, "classify", {"model_name": "leaf"}, answer, key="s3cret", seen=seen
    )
    asked: list[str] = []

    def enter_key(dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("s3cret")

    page.on("dialog", enter_key)
    _open(page, origin)
    assert "leaf" in page.inner_text("header")
    for colour in (90, 120):  # two uploads, no second question
        page.set_input_files(
            "#file", str(_image(tmp_path / f"{colour}.png", (64, 48), (colour,) * 3))
        )
        page.wait_for_function("document.body.dataset.boxes === '1'")
        page.evaluate("document.body.dataset.boxes = ''")
    assert len(asked) == 1 and "key" in asked[0]
    assert seen[0] == ("/info", "")  # refused, then asked
    assert seen[1:] == [
        ("/info", "Bearer s3cret"),
        ("/classify", "Bearer s3cret"),
        ("/classify", "Bearer s3cret"),
    ]
    assert page.evaluate("sessionStorage.getItem('visionops.apiKey')") == "s3cret"


def test_segment_view_fills_polygons_with_a_legend(page, tmp_path: Path) -> None:
    """Canned `/info` and `/segment` answers (see the module docstring)."""
    card = {
        "model_name": "cell-segmenter",
        "test_metrics": {"mask_map50_95": 0.5, "iou_general_trashbag": 0.25},
        "metric_labels": {
            "mask_map50_95": "mask mAP50-95",
            "iou_general_trashbag": "IoU general_trashbag",
        },
    }
    square = [[100, 100], [300, 100], [300, 300], [100, 300]]
    triangle = [[350, 50], [390, 250], [310, 250]]
    answer = {
        "instances": [
            {
                "class_id": 0,
                "class_name": "cell",
                "confidence": 0.91,
                "box": {"x1": 100, "y1": 100, "x2": 300, "y2": 300},
                "polygon": square,
            },
            {
                "class_id": 3,
                "class_name": "nucleus",
                "confidence": 0.55,
                "box": {"x1": 310, "y1": 50, "x2": 390, "y2": 250},
                "polygon": triangle,
            },
        ],
        "class_pixels": {"cell": 40_000, "nucleus": 8_000},
        "timing_ms": {"total": 4.0},
    }
    origin = _routed(page, "segment", card, answer)
    _open(page, origin)
    assert page.title() == "VisionOps segmenter"
    assert page.inner_text("#model") == "model cell-segmenter"
    # The names /info gives, never derived by the page.
    assert page.inner_text("#metrics") == (
        "test mask mAP50-95 0.500 · IoU general_trashbag 0.250"
    )
    page.set_input_files("#file", str(_image(tmp_path / "b.png", (400, 400), (0,) * 3)))
    page.wait_for_function("document.body.dataset.boxes === '2'")
    assert page.inner_text("#status").startswith("2 instances · server 4.0 ms")
    rows = page.eval_on_selector_all(
        "#legend tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows == [
        ["class", "instances", "area"],
        ["cell", "1", "25.0%"],
        ["nucleus", "1", "5.0%"],
    ]
    pixels = _canvas(page).astype(int)
    # Inside the square: the black image tinted with class 0's red, translucent.
    red, green, blue = pixels[250, 200]
    assert 60 < red < 160 and green < 60 and blue < 60, pixels[250, 200]
    assert pixels[380, 50].tolist() == [0, 0, 0]  # outside every polygon
    page.screenshot(path=str(tmp_path / "segment.png"))


def test_a_chosen_video_plays_with_track_ids(page, tmp_path: Path) -> None:
    """A tiny WebM (OpenCV's VP8) chosen in the video control: its frames are sent
    one at a time with one `track` session, the answer's ids drawn on them."""
    import cv2

    clip = tmp_path / "clip.webm"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"VP80"), 10, (320, 240))
    assert writer.isOpened()
    for shade in (60, 120, 180):
        writer.write(np.full((240, 320, 3), shade, np.uint8))
    writer.release()
    box = {"x1": 40, "y1": 60, "x2": 200, "y2": 180}
    answer = {
        "detections": [
            {
                "class_id": 0,
                "class_name": "board",
                "confidence": 0.8,
                "box": box,
                "track_id": 7,
            }
        ],
        "counts": {"board": 1},
        "timing_ms": {"total": 2.0},
    }
    sessions = []
    origin = _routed(page, "detect", {"model_name": "m"}, answer)
    page.on(
        "request",
        lambda r: (
            r.url.endswith("/detect")
            and sessions.append(re.search(r'name="track"\r\n\r\n(\w+)', r.post_data))
        ),
    )
    _open(page, origin)
    assert page.is_visible("#vfile")
    page.set_input_files("#vfile", str(clip))
    page.wait_for_function("Number(document.body.dataset.frames || 0) >= 2")
    labels = page.evaluate("window.visionops.labels")
    assert [label["text"] for label in labels] == ["#7 board 0.80"]
    assert len(sessions) >= 2 and all(sessions)
    assert len({m[1] for m in sessions}) == 1  # one session for the whole video
    pixels = _canvas(page)
    assert pixels.shape == (240, 320, 3)
