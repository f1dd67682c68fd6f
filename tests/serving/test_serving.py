"""The BentoML service over HTTP through `VisionService.to_asgi()`, no server."""

from __future__ import annotations

import io
import json
import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.plugin_tasks import PLUGINS
from tests.serving_app import LINEAGE, MODEL

pytest_plugins = ["tests.serving_app"]  # the app under test, one per session
LOW_CONF = 0.001  # the 2-epoch model scores low; this keeps some boxes
MB = 1024 * 1024
# The toy fourth task's view, in its own folder (`tests/plugin_tasks.py`).
COUNT_VIEW = PLUGINS / "count_task" / "view.js"


def _png(image: np.ndarray) -> bytes:
    """Lossless bytes of a BGR image: the service and cv2 decode the same pixels."""
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _error(response) -> str:
    """The message of an error answer, which has one shape: `{"error": "..."}`."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def reference(onnx_path: Path):
    from visionops.tasks.detect.onnx import OnnxDetector

    return OnnxDetector(onnx_path, threads=1)


@pytest.fixture(scope="module")
def frames(tiny_dataset) -> list[np.ndarray]:
    paths = sorted((tiny_dataset.root / "images" / "test").iterdir())[:3]
    assert len(paths) == 3
    return [cv2.imread(str(p)) for p in paths]


def asgi_post(
    client, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict, int]:
    """POSTs `chunks` to the app one ASGI message each, as a chunked upload
    arrives; returns the status, the JSON body and how many chunks were read.

    Starlette's test client reads a streamed body whole before sending it, so it
    cannot show when the service stops reading.
    """
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    client.portal.call(client.app, scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if "body" in m)
    return status, json.loads(body), read


def _detect(client, data: bytes, **params) -> dict:
    response = client.post(
        "/detect",
        files={"image": ("upload.png", data, "image/png")},
        data={k: str(v).lower() for k, v in params.items()},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_detect_equals_onnx_detector(client, service, reference, frames) -> None:
    _, tag = service
    boxes_seen = 0
    for frame in frames:
        body = _detect(client, _png(frame), conf=LOW_CONF)
        expected = reference.predict(frame, conf=LOW_CONF)
        assert len(body["detections"]) == len(expected)
        got = np.array(
            [
                [d["box"][k] for k in ("x1", "y1", "x2", "y2")]
                for d in body["detections"]
            ]
        )
        if len(expected):
            np.testing.assert_allclose(got, expected.boxes, atol=1e-3)
            np.testing.assert_allclose(
                [d["confidence"] for d in body["detections"]],
                expected.scores,
                atol=1e-5,
            )
        assert [d["class_name"] for d in body["detections"]] == [
            reference.names[int(c)] for c in expected.class_ids
        ]
        assert body["counts"] == expected.counts(reference.names)
        assert body["image"] == {"width": frame.shape[1], "height": frame.shape[0]}
        assert body["model"] == {
            "name": MODEL,
            "bento_model": tag,
            "mlflow_version": LINEAGE["mlflow_version"],
        }
        assert body["faces_blurred"] == 0
        assert body["timing_ms"]["total"] >= body["timing_ms"]["inference"] > 0
        boxes_seen += len(expected)
    assert boxes_seen > 0, "the comparison needs at least one box"
    assert set(body["counts"]) <= {"board"}


def test_render_returns_the_image_with_boxes(client, frames) -> None:
    data = _png(frames[0])
    response = client.post(
        "/render",
        files={"image": ("upload.png", data, "image/png")},
        data={"conf": str(LOW_CONF)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/")
    rendered = Image.open(io.BytesIO(response.content))
    rendered.load()
    assert rendered.size == (frames[0].shape[1], frames[0].shape[0])
    original = frames[0][:, :, ::-1]  # BGR -> RGB
    assert np.any(np.asarray(rendered.convert("RGB")) != original), "no box drawn"


def test_info_returns_the_lineage(client, service) -> None:
    _, tag = service
    response = client.post("/info", json={})
    assert response.status_code == 200
    info = response.json()
    assert info["bento_model"] == tag and info["name"] == MODEL
    for key in ("mlflow_version", "dataset_hash", "zenml_model_version"):
        assert info[key] == LINEAGE[key]
    assert info["test_metrics"] == LINEAGE["test_metrics"]
    # The display names the web page shows, from the task.
    assert info["metric_labels"] == {"map50": "mAP50", "map50_95": "mAP50-95"}
    assert info["classes"] == {"0": "board"}
    # Outside a served Bento, the Bento tag falls back to the model store tag.
    assert info["bento_tag"] == tag and info["task"] == "detect"
    # What the gate chose for the packed ONNX (the web page shows it).
    assert info["precision"] == LINEAGE["precision"] == "int8"


def test_info_precision_defaults_to_fp32_for_older_models(client, service) -> None:
    module, _ = service
    served = module.VisionService()
    served.lineage = {k: v for k, v in served.lineage.items() if k != "precision"}
    assert served.info()["precision"] == "fp32"


def test_info_names_the_served_bento(client, monkeypatch: pytest.MonkeyPatch) -> None:
    import bentoml

    # What BentoML's worker sets when it serves a built Bento.
    monkeypatch.setattr(bentoml.server_context, "bento_name", "board-detector")
    monkeypatch.setattr(bentoml.server_context, "bento_version", "abc123")
    info = client.post("/info", json={}).json()
    assert info["bento_tag"] == "board-detector:abc123"


def test_docs_redirects_to_the_swagger_ui(client) -> None:
    for path in ("/docs", "/docs/"):
        moved = client.get(path, follow_redirects=False)
        assert moved.status_code in (301, 302, 303, 307, 308), path
    page = client.get("/docs")
    assert page.status_code == 200 and page.url.path == "/"
    assert "swagger" in page.text.lower()


def test_detect_batch_equals_single_detects(client, frames) -> None:
    # Three sizes, so a mix-up of the order would show in the image sizes.
    images = [
        frames[0],
        cv2.resize(frames[1], (200, 150)),
        cv2.resize(frames[2], (96, 160)),
    ]
    response = client.post(
        "/detect_batch",
        files=[
            ("images", (f"{i}.png", _png(im), "image/png"))
            for i, im in enumerate(images)
        ],
        data={"conf": str(LOW_CONF)},  # the thresholds apply to every image
    )
    assert response.status_code == 200, response.text
    batch = response.json()
    assert len(batch) == 3
    assert sum(len(answer["detections"]) for answer in batch) > 0
    for image, answer in zip(images, batch, strict=True):
        single = _detect(client, _png(image), conf=LOW_CONF)
        assert answer["image"] == {"width": image.shape[1], "height": image.shape[0]}
        assert answer["counts"] == single["counts"]
        assert len(answer["detections"]) == len(single["detections"])
        for a, b in zip(answer["detections"], single["detections"], strict=True):
            assert a["class_id"] == b["class_id"]
            assert a["confidence"] == pytest.approx(b["confidence"], abs=1e-5)
            for k in ("x1", "y1", "x2", "y2"):
                assert a["box"][k] == pytest.approx(b["box"][k], abs=1e-3)


def test_a_request_past_its_timeout_stops_its_work(
    client, frames, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from visionops.serving import limits, uploads

    decoded: list[int] = []
    decode = uploads.decode_image

    def counted(data: bytes, budget=None) -> np.ndarray:
        decoded.append(len(data))
        return decode(data, budget)

    monkeypatch.setattr(uploads, "decode_image", counted)
    files = [("images", (f"{i}.png", _png(frames[0]), "image/png")) for i in range(8)]
    monkeypatch.setattr(limits, "REQUEST_TIMEOUT_S", 0.0)  # due as it arrives
    with caplog.at_level(logging.WARNING, logger="visionops.serving.uploads"):
        response = client.post("/detect_batch", files=files)
    # Answered by the worker itself once it stopped (BentoML's own 504 comes
    # at the same timeout): nothing was decoded past the deadline.
    assert response.status_code == 504 and _error(response)
    assert decoded == []
    assert "past its 0 s, answered 504: decoded 0 of 8 images" in caplog.text
    monkeypatch.setattr(limits, "REQUEST_TIMEOUT_S", 30.0)
    response = client.post("/detect_batch", files=files)
    assert response.status_code == 200, response.text
    assert len(response.json()) == 8 and len(decoded) == 8


def _just_over_20mb_png() -> bytes:
    """A valid uncompressed PNG a few KB over the upload limit."""
    data = _pil_bytes(Image.new("RGB", (2650, 2640)), "PNG", compress_level=0)
    assert 20 * MB < len(data) < 20 * MB + 64 * 1024
    return data


def _file(name: str, data: bytes, content_type: str) -> dict:
    return {"image": (name, data, content_type)}


def _bad_inputs() -> list:
    rng = np.random.default_rng(0)
    jpeg = _pil_bytes(
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)), "JPEG"
    )
    ok = _file("ok.jpg", jpeg, "image/jpeg")
    return [
        pytest.param(_file("empty.jpg", b"", "image/jpeg"), {}, 400, id="empty"),
        pytest.param(
            _file("notes.txt", b"just some text\n", "text/plain"),
            {},
            415,
            id="not-an-image",
        ),
        pytest.param(
            _file("fake.jpg", b"<html>404</html>", "image/jpeg"),
            {},
            415,
            id="html-as-jpeg",
        ),
        pytest.param(
            _file("tiny.jpg", b"ab\n", "image/jpeg"),
            {},
            415,
            id="three-bytes",  # shorter than some format checks read: not a 500
        ),
        pytest.param(
            _file("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg"),
            {},
            400,
            id="truncated",
        ),
        pytest.param(
            _file("a.gif", _pil_bytes(Image.new("RGB", (32, 32)), "GIF"), "image/gif"),
            {},
            415,
            id="gif",
        ),
        pytest.param(
            _file("big.jpg", b"\xff" * (21 * MB), "image/jpeg"),
            {},
            413,
            id="body-over-20MB",  # refused from Content-Length, before reading
        ),
        pytest.param(
            _file("big.png", _just_over_20mb_png(), "image/png"),
            {},
            413,
            id="image-over-20MB",  # within the header slack: refused after reading
        ),
        pytest.param(
            # 45 Mpx, a few KB: over the pixel limit, under PIL's bomb error
            _file(
                "wide.png", _pil_bytes(Image.new("1", (9000, 5000)), "PNG"), "image/png"
            ),
            {},
            413,
            id="too-many-pixels",
        ),
        pytest.param(
            # 100 Mpx: PIL itself refuses to open it (a decompression bomb)
            _file(
                "bomb.png",
                _pil_bytes(Image.new("1", (10000, 10000)), "PNG"),
                "image/png",
            ),
            {},
            413,
            id="decompression-bomb",
        ),
        pytest.param(
            {"image": (None, "http://127.0.0.1:9/x.jpg")}, {}, 400, id="url-string"
        ),
        pytest.param(None, {"image": "http://127.0.0.1:9/x.jpg"}, 415, id="url-form"),
        pytest.param(ok, {"conf": "1.5"}, 400, id="conf-above-1"),
        pytest.param(ok, {"conf": "-0.1"}, 400, id="conf-negative"),
        pytest.param(ok, {"conf": "abc"}, 400, id="conf-not-a-number"),
        pytest.param(ok, {"iou": "0"}, 400, id="iou-0"),
        pytest.param(ok, {"max_det": "0"}, 400, id="max-det-0"),
    ]


@pytest.mark.parametrize(("files", "data", "status"), _bad_inputs())
def test_bad_input_answers_4xx_json(client, files, data, status, outbound) -> None:
    response = client.post("/detect", files=files, data=data)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = _error(response)
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert len(message) < 500
    assert outbound == []  # a URL is never fetched


def test_blur_faces_on_a_real_face(client) -> None:
    from skimage import data

    astronaut = _png(data.astronaut()[:, :, ::-1].copy())
    assert _detect(client, astronaut, blur_faces=True)["faces_blurred"] >= 1
    assert _detect(client, astronaut)["faces_blurred"] == 0


def test_web_page_and_openapi(client) -> None:
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="file"' in page.text and "dataset.boxes" in page.text
    docs = client.get("/docs.json")
    assert docs.status_code == 200
    paths = set(docs.json()["paths"])
    assert {"/detect", "/detect_batch", "/render", "/info"} <= paths
    assert {"/healthz", "/readyz", "/metrics"} <= paths
    assert client.get("/readyz").status_code == 200
    # The page draws with the view that `/info` names, served from the task.
    info = client.post("/info", json={}).json()
    assert info["endpoint"] == "/detect" and info["view"] == "/ui/views/detect.js"
    assert info["parameters"] == ["conf", "iou", "max_det", "blur_faces", "track"]
    view = client.get(info["view"])
    assert view.status_code == 200
    assert view.headers["content-type"].startswith("text/javascript")
    assert "export default" in view.text and "body.detections" in view.text
    missing = client.get("/ui/views/nothing.js")
    assert missing.status_code == 404 and "nothing" in _error(missing)


def test_api_keys_guard_every_call_but_health_and_pages(
    client, service, frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISIONOPS_API_KEY", "first-key, second-key")
    files = {"image": ("upload.png", _png(frames[0]), "image/png")}
    # Every API: the task's endpoints (built per task), `/render`, `/info`.
    calls = [
        ("/detect", {"files": files}),
        ("/detect_batch", {"files": [("images", files["image"])]}),
        ("/render", {"files": files}),
        ("/segment", {"files": files}),
        ("/info", {"json": {}}),
    ]
    for path, request in calls:
        missing = client.post(path, **request)
        assert missing.status_code == 401, path
        assert "Authorization: Bearer" in _error(missing)
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = client.post(
            path, headers={"Authorization": "Bearer first-keyX"}, **request
        )
        assert wrong.status_code == 403 and "not one of" in _error(wrong), path
        basic = client.post(
            path, headers={"Authorization": "Basic Zmlyc3Q="}, **request
        )
        assert basic.status_code == 401, path
    for key in ("first-key", "second-key"):
        answer = client.post(
            "/detect", files=files, headers={"Authorization": f"Bearer {key}"}
        )
        assert answer.status_code == 200 and "detections" in answer.json()
    # The served task answers another task's endpoint only once the key is right.
    other = client.post(
        "/segment", files=files, headers={"Authorization": "Bearer second-key"}
    )
    assert other.status_code == 404
    # Orchestrators and the pages a browser loads before it has the key.
    for path in ("/readyz", "/livez", "/ui/", "/ui/views/detect.js"):
        assert client.get(path).status_code == 200, path
    # (In-process, without a server's metrics folder, BentoML answers 500 here.)
    assert client.get("/metrics").status_code not in (401, 403)
    assert client.get("/docs.json").status_code == 200
    monkeypatch.delenv("VISIONOPS_API_KEY")
    assert client.post("/info", json={}).status_code == 200  # off when unset


def test_uploads_are_never_written_to_disk(
    client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spooled: list[int] = []
    spool = tempfile.SpooledTemporaryFile.__init__

    def recording_spool(self, *args, **kwargs) -> None:
        spooled.append(1)
        spool(self, *args, **kwargs)

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "__init__", recording_spool)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    rng = np.random.default_rng(1)
    big = _png(rng.integers(0, 255, (1400, 1300, 3), dtype=np.uint8))
    assert len(big) > 5 * MB  # far over Starlette's 1 MB default spool
    assert _detect(client, big)["image"] == {"width": 1300, "height": 1400}

    # Chunked (no Content-Length), 60 MB: refused once the limit is passed.
    boundary = "x" * 16
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        'filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
    ).encode()
    chunks = [head] + [b"\0" * MB] * 60 + [f"\r\n--{boundary}--\r\n".encode()]
    status, answer, read = asgi_post(
        client,
        "/detect",
        chunks,
        [(b"content-type", f"multipart/form-data; boundary={boundary}".encode())],
    )
    assert status == 413, answer
    assert "20 MB" in answer["error"] and list(answer) == ["error"]
    assert read <= 22, f"{read} chunks of 1 MB were read: past the limit"
    assert spooled == [] and list(temp.iterdir()) == []

    # The check can fail: Starlette's own form parser spools every file part.
    from starlette.formparsers import MultiPartParser
    from starlette.requests import Request

    async def parse() -> None:
        chunks = iter([head + b"\0" * 10 + f"\r\n--{boundary}--\r\n".encode()])

        async def receive() -> dict:
            return {"type": "http.request", "body": next(chunks, b"")}

        request = Request(
            {
                "type": "http",
                "method": "POST",
                "headers": [
                    (
                        b"content-type",
                        f"multipart/form-data; boundary={boundary}".encode(),
                    )
                ],
            },
            receive,
        )
        await MultiPartParser(request.headers, request.stream()).parse()

    import anyio

    anyio.run(parse)
    assert spooled


# A fourth task, added as a user adds one: the toy `count` task is one folder of
# its own (tests/plugins/count_task: its task, answer and view) and one line in
# `visionops.tasks.REGISTRY`. It counts the detector's boxes.
def test_a_fourth_task_is_one_folder(counter, reference, frames) -> None:
    info = counter.post("/info", json={}).json()
    assert info["task"] == "count" and info["endpoint"] == "/count"
    assert info["parameters"] == ["conf", "at_least"]
    view = counter.get(info["view"])
    assert view.status_code == 200 and view.text == COUNT_VIEW.read_text()
    assert "/count" in counter.get("/docs.json").json()["paths"]

    upload = {"image": ("x.png", _png(frames[0]), "image/png")}
    body = counter.post("/count", files=upload, data={"conf": str(LOW_CONF)}).json()
    expected = reference.predict(frames[0], conf=LOW_CONF)
    assert body["objects"] == len(expected.boxes) > 0
    assert body["image"] == {"width": frames[0].shape[1], "height": frames[0].shape[0]}
    assert body["model"]["name"] == "test-counter" and body["timing_ms"]["total"] > 0
    many = counter.post("/count", files=upload, data={"conf": "0.99", "at_least": "7"})
    assert many.json()["objects"] == 7
    refused = counter.post("/count", files=upload, data={"at_least": "-1"})
    assert refused.status_code == 400 and "at_least" in _error(refused)
    for path in ("/detect", "/classify", "/segment"):
        other = counter.post(path, files=upload)
        assert other.status_code == 404, path
        assert "count model" in _error(other) and "use /count" in _error(other)


def test_api_keys_refuse_a_websocket_without_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from visionops.serving.keys import ApiKeys

    monkeypatch.setenv("VISIONOPS_API_KEY", "k1")
    reached: list[str] = []
    sent: list[dict] = []

    async def app(scope, receive, send) -> None:
        reached.append(scope["path"])

    async def send(message: dict) -> None:
        sent.append(message)

    guard = ApiKeys(app)
    for headers in ([], [(b"authorization", b"Bearer k2")]):
        scope = {"type": "websocket", "path": "/stream", "headers": headers}
        asyncio.run(guard(scope, None, send))
    assert reached == [] and [m["code"] for m in sent] == [1008, 1008]
    scope["headers"] = [(b"authorization", b"Bearer k1")]
    asyncio.run(guard(scope, None, send))
    assert reached == ["/stream"]
