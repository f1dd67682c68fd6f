"""Soak of the served Bento: malformed requests alongside concurrent good clients.

Usage: python bench/service_soak.py [--malformed 1200] [--good-clients 16]
    [--imgsz 320] [--max-seconds 600]

In a throwaway state folder, as bench/serving.py does: a random-init yolo11n
exported to ONNX, stored with `save_model`, built with `build_bento` and served
with `bentoml serve` (the service's workers, `bench/harness.py`) on a free
loopback port. Then, at the same time:

- `--good-clients` clients, half on `/detect`, half on `/detect_batch` (one image
  per call, run in the same workers and threads as the bad clients' calls), each
  with an image of its own size; an answer that is not a 200 with that
  client's image size is a cross-client failure;
- 4 threads sending `--malformed` malformed requests, cycled over a fixed catalog
  (JSON instead of multipart, wrong field, no boundary, a file to /info, 1,001
  fields, two files in `image`, truncated and non-image files, URLs as text,
  chunked uploads over the limit, randomly damaged bodies, ...). Each must answer
  a 4xx `{"error": "..."}` (or, for `/detect_batch`, a 200 whose item for the bad
  image is `{"error": "..."}`).

Prints the requests sent, 5xx answers (must be 0), error-shape violations,
cross-client failures (must be 0), p50/p95 latencies, and the RSS of the server's
processes before and after. Bounded in count and in time; the server is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(tempfile.mkdtemp(prefix="bench-soak-"))
os.environ["VISIONOPS_STATE_DIR"] = str(STATE)
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import visionops  # noqa: E402, F401  (offline environment, state in STATE)

HOST = "127.0.0.1"
MB = 1024 * 1024
BOUNDARY = "soakboundary0123"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _jpeg(seed: int, width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _form(*parts: tuple[bytes, bytes]) -> bytes:
    out = io.BytesIO()
    for headers, content in parts:
        out.write(f"--{BOUNDARY}\r\n".encode() + headers + b"\r\n\r\n" + content)
        out.write(b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def _file(name: str, data: bytes) -> tuple[bytes, bytes]:
    disposition = f'form-data; name="{name}"; filename="x.jpg"'
    return f"Content-Disposition: {disposition}\r\nContent-Type: image/png".encode(), (
        data
    )


def _field(name: str, value: bytes) -> tuple[bytes, bytes]:
    return f'Content-Disposition: form-data; name="{name}"'.encode(), value


def _catalog(good: bytes) -> list[tuple[str, str, str, str | None, object]]:
    """(kind, method, path, content type, body) of malformed requests; a body of
    None with kind `chunked-*` is sent as a chunked upload over the limit."""
    cut = good[: len(good) // 2]
    fields = _form(*[_field(f"f{i}", b"1") for i in range(1001)])
    return [
        ("json-body", "POST", "/detect", "application/json", b'{"image": "x"}'),
        ("json-batch", "POST", "/detect_batch", "application/json", b"[]"),
        ("wrong-field", "POST", "/detect", MULTIPART, _form(_file("img", good))),
        ("no-boundary", "POST", "/detect", "multipart/form-data", good),
        ("file-to-info", "POST", "/info", MULTIPART, _form(_file("image", good))),
        ("1001-fields", "POST", "/detect", MULTIPART, fields),
        ("two-files", "POST", "/render", MULTIPART, _form(*[_file("image", good)] * 2)),
        ("truncated", "POST", "/detect", MULTIPART, _form(_file("image", cut))),
        (
            "truncated-batch",
            "POST",
            "/detect_batch",
            MULTIPART,
            _form(_file("images", cut)),
        ),
        ("not-image", "POST", "/detect", MULTIPART, _form(_file("image", b"GIF89a;"))),
        (
            "url-text",
            "POST",
            "/detect",
            MULTIPART,
            _form(_field("image", b"http://x/")),
        ),
        (
            "bad-conf",
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", good), _field("conf", b"2")),
        ),
        (
            "binary-field",
            "POST",
            "/detect",
            MULTIPART,
            _form(_file("image", good), _field("conf", b"\xff")),
        ),
        ("no-closing", "POST", "/detect", MULTIPART, _form(_file("image", good))[:-30]),
        ("text-plain", "POST", "/detect", "text/plain", good),
        ("get", "GET", "/detect", None, b""),
        ("unknown-path", "POST", "/nope", MULTIPART, _form(_file("image", good))),
        ("damaged", "POST", "/detect", MULTIPART, None),
        ("chunked-over-limit", "POST", "/detect", MULTIPART, None),
    ]


def _damaged(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 30)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data[: rng.randint(len(data) // 2, len(data))])


def _chunked_over_limit(port: int, good: bytes) -> tuple[int, bytes]:
    """A chunked upload of 40 MB of zeros; the answer once the server gives it."""
    head = _form(_file("image", b""))
    opening = head[: head.index(b"\r\n--" + BOUNDARY.encode() + b"--")]
    with socket.create_connection((HOST, port), timeout=60) as sock:
        sock.sendall(
            f"POST /detect HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {MULTIPART}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        chunks = itertools.chain([opening], itertools.repeat(b"\0" * MB, 40))
        try:
            for chunk in chunks:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: read the answer
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            answer += data
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ")[1]) if head_bytes else 0
    return status, body


def _rss(pid: int) -> dict[int, int]:
    import psutil

    root = psutil.Process(pid)
    out = {}
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            out[process.pid] = process.memory_info().rss
    return out


def main() -> None:  # noqa: C901, PLR0915
    """Serves a Bento, runs the soak, prints the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--malformed", type=int, default=1200)
    parser.add_argument("--good-clients", type=int, default=16)
    parser.add_argument("--good-requests", type=int, default=25, help="per client")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()

    import harness
    import httpx
    from ultralytics import YOLO

    from visionops.engine.onnx import export_onnx
    from visionops.serving.bento import build_bento, save_model

    server = None
    deadline = time.monotonic() + args.max_seconds
    lock = threading.Lock()
    counts = {"requests": 0, "5xx": 0, "shape": 0, "cross": 0, "unexpected": 0}
    good_latency: list[float] = []
    bad_latency: list[float] = []
    problems: list[str] = []
    kinds: dict[str, dict[int, int]] = {}

    def note(kind: str, status: int, problem: str = "", key: str = "") -> None:
        with lock:
            counts["requests"] += 1
            kinds.setdefault(kind, {}).setdefault(status, 0)
            kinds[kind][status] += 1
            if status >= 500:
                counts["5xx"] += 1
            if key:
                counts[key] += 1
            if problem and len(problems) < 20:
                problems.append(f"{kind}: {problem}")

    try:
        work = STATE / "model"
        work.mkdir()
        weights = work / "yolo11n.pt"
        YOLO("yolo11n.yaml").save(str(weights))
        onnx = export_onnx(weights, args.imgsz, out_dir=work)
        lineage = {"model_name": "soak-detector", "serving_imgsz": args.imgsz}
        tag = save_model("soak-detector", onnx, weights, lineage)
        bento = build_bento(tag, lineage)
        server = harness.serve(str(bento.tag), work)
        url, port, server_pid = server.url, server.port, server.process.pid

        sizes = [(160 + 16 * i, 120 + 8 * i) for i in range(args.good_clients)]
        goods = [_jpeg(i, w, h) for i, (w, h) in enumerate(sizes)]
        catalog = _catalog(goods[0])
        with httpx.Client(timeout=60) as warm:  # both endpoints, every worker
            for _ in range(4):
                for endpoint, field in (
                    ("detect", "image"),
                    ("detect_batch", "images"),
                ):
                    warm.post(f"{url}/{endpoint}", files={field: ("w.jpg", goods[0])})
        rss_before = _rss(server_pid)

        def good_client(index: int) -> None:
            endpoint = "detect" if index % 2 == 0 else "detect_batch"
            field = "image" if endpoint == "detect" else "images"
            width, height = sizes[index]
            with httpx.Client(timeout=60) as client:
                for _ in range(args.good_requests):
                    if time.monotonic() > deadline:
                        return
                    start = time.perf_counter()
                    r = client.post(
                        f"{url}/{endpoint}",
                        files={field: (f"{index}.jpg", goods[index], "image/jpeg")},
                    )
                    elapsed = time.perf_counter() - start
                    try:
                        body = r.json()
                        answer = body[0] if endpoint == "detect_batch" else body
                        image = answer.get("image")
                    except (ValueError, IndexError, KeyError, AttributeError):
                        image = None
                    if r.status_code == 200 and image == {
                        "width": width,
                        "height": height,
                    }:
                        with lock:
                            good_latency.append(elapsed)
                        note(f"good-{endpoint}", r.status_code)
                    else:
                        note(
                            f"good-{endpoint}",
                            r.status_code,
                            f"{r.status_code} {r.text[:160]}",
                            "cross",
                        )

        def bad_client(index: int, jobs: list[int]) -> None:
            rng = random.Random(index)
            valid = _form(_file("image", goods[0]), _field("conf", b"0.3"))
            with httpx.Client(timeout=60) as client:
                for job in jobs:
                    if time.monotonic() > deadline:
                        return
                    kind, method, path, ctype, body = catalog[job % len(catalog)]
                    start = time.perf_counter()
                    if kind == "chunked-over-limit":
                        status, raw = _chunked_over_limit(port, goods[0])
                        text = raw.decode("utf-8", "replace")
                    else:
                        content = _damaged(valid, rng) if kind == "damaged" else body
                        headers = {"content-type": ctype} if ctype else {}
                        r = client.request(
                            method, f"{url}{path}", content=content, headers=headers
                        )
                        status, text = r.status_code, r.text
                    with lock:
                        bad_latency.append(time.perf_counter() - start)
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        parsed = None
                    if kind == "truncated-batch" and status == 200:
                        ok = (
                            isinstance(parsed, list)
                            and len(parsed) == 1
                            and list(parsed[0]) == ["error"]
                        )
                    elif kind == "damaged" and status == 200:
                        ok = True  # damage in a place that does not matter
                    else:
                        ok = (
                            400 <= status < 500
                            and isinstance(parsed, dict)
                            and list(parsed) == ["error"]
                            and isinstance(parsed["error"], str)
                        )
                    note(
                        kind,
                        status,
                        "" if ok else f"{status} {text[:160]}",
                        "" if ok else "shape",
                    )

        bad_threads = 4
        jobs = list(range(args.malformed))
        threads = [
            threading.Thread(target=good_client, args=(i,))
            for i in range(args.good_clients)
        ]
        threads += [
            threading.Thread(target=bad_client, args=(i, jobs[i::bad_threads]))
            for i in range(bad_threads)
        ]
        samples: list[float] = []  # the server's total RSS, every second
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(sum(_rss(server_pid).values()) / MB)

        sampler = threading.Thread(target=sample)
        began = time.perf_counter()
        sampler.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=max(1.0, deadline - time.monotonic()))
        wall = time.perf_counter() - began
        done.set()
        sampler.join()
        rss_after = _rss(server_pid)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(STATE, ignore_errors=True)

    good_total = sum(
        sum(kinds.get(f"good-{e}", {}).values()) for e in ("detect", "detect_batch")
    )
    malformed_total = counts["requests"] - good_total
    g50, g95 = harness.p50_p95(good_latency) if good_latency else (float("nan"),) * 2
    b50, b95 = harness.p50_p95(bad_latency) if bad_latency else (float("nan"),) * 2
    before = sum(rss_before.values()) / MB
    after = sum(rss_after.get(pid, 0) for pid in rss_before) / MB
    print(
        f"\nsoak of `bentoml serve` (yolo11n at {args.imgsz} px, {os.cpu_count()} "
        f"cores), {wall:.0f} s"
    )
    print(
        f"requests: {counts['requests']} ({good_total} good from "
        f"{args.good_clients} clients, {malformed_total} malformed)"
    )
    print(f"5xx: {counts['5xx']}")
    print(f"error-shape violations: {counts['shape']}")
    print(f"cross-client failures: {counts['cross']}")
    print(
        f"good p50/p95: {g50:.0f} / {g95:.0f} ms; malformed p50/p95: "
        f"{b50:.0f} / {b95:.0f} ms"
    )
    print(
        f"RSS of the server's {len(rss_before)} processes: {before:.0f} MB -> "
        f"{after:.0f} MB ({after - before:+.0f} MB)"
    )
    if samples:
        quarters = [
            samples[min(len(samples) - 1, len(samples) * q // 4)] for q in (1, 2, 3)
        ]
        print(
            "  total at 1/4, 1/2, 3/4 of the run: "
            + ", ".join(f"{value:.0f} MB" for value in quarters)
        )
    for pid, rss in sorted(rss_before.items()):
        print(f"  pid {pid}: {rss / MB:.0f} -> {rss_after.get(pid, 0) / MB:.0f} MB")
    print("statuses by kind:")
    for kind, statuses in sorted(kinds.items()):
        print(f"  {kind}: {dict(sorted(statuses.items()))}")
    for problem in problems:
        print("  problem:", problem)
    if counts["5xx"] or counts["cross"] or counts["shape"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
