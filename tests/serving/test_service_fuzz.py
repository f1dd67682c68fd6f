"""Malformed requests and concurrent clients: never a 5xx, one error shape, and
no client's request changes another's answer. Bounded: a fixed, seeded set."""

from __future__ import annotations

import contextlib
import io
import json
import random
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from tests.serving import test_web_ui
from tests.serving.test_serving import _error, _pil_bytes

pytest_plugins = ["tests.serving_app"]  # the app of tests/serving/test_serving.py
served = test_web_ui.served  # a real `bentoml serve` of a built Bento

MB = 1024 * 1024
BOUNDARY = "fuzzboundary0123"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _jpeg(seed: int = 0, size: tuple[int, int] = (160, 120)) -> bytes:
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return _pil_bytes(Image.fromarray(array), "JPEG")


def _form(*parts: tuple[bytes, bytes], boundary: str = BOUNDARY) -> bytes:
    """A multipart body from raw (headers, content) parts."""
    out = io.BytesIO()
    for headers, content in parts:
        out.write(f"--{boundary}\r\n".encode() + headers + b"\r\n\r\n")
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def _file(name: str, data: bytes, filename: str = "a.jpg") -> tuple[bytes, bytes]:
    return (
        f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg"
    ).encode(), data


def _field(name: str, value: str | bytes) -> tuple[bytes, bytes]:
    data = value.encode() if isinstance(value, str) else value
    return f'Content-Disposition: form-data; name="{name}"'.encode(), data


GOOD = _jpeg()
TRUNCATED = GOOD[: len(GOOD) // 2]


def _malformed() -> list:
    """(method, path, content-type, body, expected status) of malformed requests."""
    many_fields = _form(*[_field(f"f{i}", "1") for i in range(1001)])
    cases = {
        "json-to-detect": ("POST", "/detect", "application/json", b'{"image": 1}', 415),
        "json-to-render": ("POST", "/render", "application/json", b"{}", 415),
        "json-to-batch": ("POST", "/detect_batch", "application/json", b"[]", 415),
        "text-plain": ("POST", "/detect", "text/plain", GOOD, 415),
        "no-content-type": ("POST", "/detect", None, GOOD, 415),
        "urlencoded": (
            "POST",
            "/detect",
            "application/x-www-form-urlencoded",
            b"image=http%3A%2F%2F127.0.0.1%3A9%2Fx.jpg",
            415,
        ),
        "no-boundary": ("POST", "/detect", "multipart/form-data", GOOD, 400),
        "wrong-boundary": (
            "POST",
            "/detect",
            "multipart/form-data; boundary=other",
            _form(_file("image", GOOD)),
            400,
        ),
        "no-closing-boundary": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD))[:-40],
            400,
        ),
        "wrong-field-name": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("img", GOOD)),
            400,
        ),
        "wrong-field-binary": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _field("\xff", b"\xff\xfe")),
            400,
        ),
        "binary-param": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _field("conf", b"\xff\xfe\x00")),
            400,
        ),
        "param-as-file": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _file("conf", b"0.5")),
            400,
        ),
        "param-twice": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _field("conf", "0.5"), _field("conf", "0.6")),
            400,
        ),
        "param-too-long": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _field("conf", "0" * 5000)),
            400,
        ),
        "image-as-text": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_field("image", "http://127.0.0.1:9/x.jpg")),
            400,
        ),
        "two-files-one-field": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", GOOD), _file("image", GOOD)),
            400,
        ),
        "two-files-render": (
            "POST",
            "/render",
            MULTIPART,
            _form(_file("image", GOOD), _file("image", GOOD)),
            400,
        ),
        "no-disposition": (
            "POST",
            "/detect",
            MULTIPART,
            _form((b"Content-Type: image/jpeg", GOOD)),
            400,
        ),
        "no-image": ("POST", "/detect", MULTIPART, _form(), 400),
        "batch-no-image": ("POST", "/detect_batch", MULTIPART, _form(), 400),
        "batch-too-many-files": (
            "POST",
            "/detect_batch",
            MULTIPART,
            _form(*[_file("images", b"x") for _ in range(65)]),
            400,
        ),
        "1001-fields": ("POST", "/detect", MULTIPART, many_fields, 400),
        "1001-fields-info": ("POST", "/info", MULTIPART, many_fields, 415),
        "file-to-info": ("POST", "/info", MULTIPART, _form(_file("image", GOOD)), 415),
        "info-not-json": ("POST", "/info", "application/json", b"{nope", 400),
        "info-json-list": ("POST", "/info", "application/json", b"[1, 2]", 400),
        "info-unknown-key": ("POST", "/info", "application/json", b'{"x": 1}', 400),
        "info-text": ("POST", "/info", "text/plain", b"hello", 415),
        "get-detect": ("GET", "/detect", None, b"", 405),
        "unknown-path": ("POST", "/nope", MULTIPART, _form(_file("image", GOOD)), 404),
        "header-too-long": (
            "POST",
            "/detect",
            MULTIPART,
            _form((b"X-Junk: " + b"a" * 20_000, GOOD)),
            400,
        ),
        "truncated-image": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", TRUNCATED)),
            400,
        ),
        "empty-image": ("POST", "/render", MULTIPART, _form(_file("image", b"")), 400),
        "not-an-image": (
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", b"GIF89a")),
            415,
        ),
    }
    return [pytest.param(*case, id=name) for name, case in cases.items()]


def _check_error(response, status: int | None = None) -> str:
    assert response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.status_code >= 400
    message = _error(response)
    assert "Traceback" not in message and 'File "' not in message
    return message


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body", "status"), _malformed()
)
def test_malformed_request_answers_4xx_in_one_shape(
    client, method, path, content_type, body, status, outbound
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.request(method, path, content=body, headers=headers)
    _check_error(response, status)
    assert outbound == []


def test_mutated_bodies_never_answer_5xx(client) -> None:
    """Seeded random damage to a valid request: bytes flipped, cut, repeated."""
    rng = random.Random(8)
    valid = _form(_file("image", GOOD), _field("conf", "0.3"), _field("iou", "0.5"))
    statuses = set()
    for _ in range(60):
        body = bytearray(valid)
        kind = rng.choice(["flip", "cut", "insert", "repeat"])
        if kind == "flip":
            for _ in range(rng.randint(1, 20)):
                body[rng.randrange(len(body))] = rng.randrange(256)
        elif kind == "cut":
            body = body[: rng.randrange(len(body))]
        elif kind == "insert":
            at = rng.randrange(len(body))
            body[at:at] = rng.randbytes(rng.randint(1, 200))
        else:
            start = rng.randrange(len(body))
            body[start:start] = body[start : start + rng.randint(1, 500)]
        path = rng.choice(["/detect", "/render", "/detect_batch"])
        response = client.post(
            path, content=bytes(body), headers={"content-type": MULTIPART}
        )
        statuses.add(response.status_code)
        if response.status_code >= 400:
            _check_error(response)
    assert max(statuses) < 500


def test_limits_in_messages_are_the_real_ones(client) -> None:
    over = client.post(
        "/detect",
        content=b"\0" * (21 * MB),
        headers={"content-type": MULTIPART},
    )
    message = _check_error(over, 413)
    assert "the limit is 20 MB" in message
    bomb = _pil_bytes(Image.new("1", (10000, 10000)), "PNG")
    response = client.post("/detect", files={"image": ("b.png", bomb, "image/png")})
    message = _check_error(response, 413)
    assert "40 Mpx" in message and "80000000" not in message


def test_jpeg_declared_as_png_is_an_image(client) -> None:
    for declared in ("image/png", "application/octet-stream", "text/plain"):
        response = client.post("/detect", files={"image": ("x.png", GOOD, declared)})
        assert response.status_code == 200, (declared, response.text)
        assert response.json()["image"] == {"width": 160, "height": 120}


def test_batch_call_bad_image_gets_its_own_error(client) -> None:
    response = client.post(
        "/detect_batch",
        files=[
            ("images", ("a.jpg", GOOD, "image/jpeg")),
            ("images", ("cut.jpg", TRUNCATED, "image/jpeg")),
            ("images", ("b.jpg", _jpeg(1, (96, 64)), "image/jpeg")),
            ("images", ("t.txt", b"hello", "text/plain")),
        ],
    )
    assert response.status_code == 200, response.text
    first, cut, second, text = response.json()
    assert first["image"] == {"width": 160, "height": 120}
    assert second["image"] == {"width": 96, "height": 64}
    assert list(cut) == ["error"] and "truncated" in cut["error"]
    assert list(text) == ["error"] and "not a readable image" in text["error"]


def test_concurrent_bad_clients_do_not_affect_good_ones(client) -> None:
    """6 good and 2 truncated-JPEG clients on `detect_batch` at once (the service
    runs requests concurrently on its threads): each answer is its own."""
    sizes = [(64 + 16 * i, 48 + 8 * i) for i in range(6)]
    goods = [_jpeg(i, size) for i, size in enumerate(sizes)]
    problems: list[str] = []

    def good_client(index: int) -> None:
        for _ in range(12):
            r = client.post(
                "/detect_batch",
                files=[("images", ("g.jpg", goods[index], "image/jpeg"))],
            )
            answer = r.json()
            width, height = sizes[index]
            if r.status_code != 200 or answer[0].get("image") != {
                "width": width,
                "height": height,
            }:
                problems.append(f"good {index}: {r.status_code} {r.text[:200]}")

    def bad_client(index: int) -> None:
        for _ in range(12):
            r = client.post(
                "/detect_batch",
                files=[("images", ("b.jpg", TRUNCATED, "image/jpeg"))],
            )
            if r.status_code != 200 or list(r.json()[0]) != ["error"]:
                problems.append(f"bad {index}: {r.status_code} {r.text[:200]}")

    threads = [threading.Thread(target=good_client, args=(i,)) for i in range(6)]
    threads += [threading.Thread(target=bad_client, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert problems == []


# --- a real `bentoml serve`: transfer encodings ---------------------------------------


def _raw_post(url: str, path: str, head: bytes, chunks, limit: float = 60) -> tuple:
    """Sends a chunked request over a socket, stopping when the server answers;
    returns (status, body, bytes of content sent)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=limit) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n"
            + head
            + b"\r\n"
        )
        sock.setblocking(False)
        answer = b""
        deadline = time.monotonic() + limit
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer or time.monotonic() > deadline:
                break
            data = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
            try:
                sock.setblocking(True)
                sock.sendall(data)
                sock.setblocking(False)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            sock.setblocking(True)
            sock.sendall(b"0\r\n\r\n")
        sock.setblocking(True)
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        head_bytes, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head_bytes.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length and time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                break
            body += data
    status = int(head_bytes.split(b" ")[1])
    return status, body, sent


def test_served_chunked_uploads_and_the_bentoml_client(
    served: dict, sample_dir
) -> None:
    import bentoml

    url = served["url"]
    images = sorted(sample_dir.rglob("*.jpg"))[:2]
    # BentoML's own client reads the endpoints' schema: files go as multipart.
    with bentoml.SyncHTTPClient(url) as bento_client:
        single = bento_client.detect(image=images[0], conf=0.5)
        batch = bento_client.detect_batch(images=images)
        info = bento_client.info()
    assert single["image"] == batch[0]["image"] and len(batch) == 2
    assert info["name"] == served["model_tag"].split(":")[0]

    head = f"Content-Type: {MULTIPART}\r\n".encode()
    good = _form(_file("image", GOOD))
    status, body, _ = _raw_post(url, "/detect", head, [good[:100], good[100:]])
    assert status == 200, body
    assert json.loads(body)["image"] == {"width": 160, "height": 120}

    opening, _, _ = good.partition(GOOD)
    chunks = [opening] + [b"\0" * MB] * 60
    status, body, sent = _raw_post(url, "/detect", head, chunks)
    assert status == 413, body
    assert json.loads(body) == {"error": json.loads(body)["error"]}
    assert "20 MB" in json.loads(body)["error"]
    assert sent <= 30 * MB, f"{sent / MB:.0f} MB were taken before the refusal"
