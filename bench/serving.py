"""Serving latency and throughput: raw ONNX Runtime, the BentoML service, PyTorch.

Usage: python bench/serving.py [--imgsz PX] [--demo-imgsz PX] [--runs N] [--rounds N]
                               [--levels 1,4,16] [--raw-only]

In one run on this machine, in a throwaway state folder: a random-init yolo11n
(latency does not depend on the weights) saved as a .pt, exported to ONNX at
`--imgsz`, stored with `save_model`, built with `build_bento` and served with
`start_server` on a free loopback port. Images are the bundled sample's 640x640
JPEGs. Measured:

- `bentoml serve` start until `/readyz` answers;
- in interleaved rounds, so that background load on the machine hits every path
  alike: raw ONNX Runtime (`session.run` on a prepared 1x3xSxS blob, 1 thread as
  in one service worker, and one thread per core), FP32 and static INT8
  (`visionops.quantize.quantize`, calibrated on the sample's images), at `--imgsz`
  and at the demo's `--demo-imgsz`; `OnnxDetector.predict` in
  process (letterbox + session + decode + NMS); PyTorch
  `ultralytics.YOLO(pt).predict(frame, imgsz=S)`, the naive baseline, with
  Ultralytics' own thread setting and one thread per core; the service's `detect`
  over HTTP one request at a time (client round trip and the server's
  `timing_ms`);
- throughput at each concurrency level with `detect` and with `detect_batch`
  (one image per request; BentoML's adaptive batching merges concurrent ones).

`--raw-only` times the raw ONNX Runtime rows alone (no server, no PyTorch).
Every loop is bounded in count and time; the server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(tempfile.mkdtemp(prefix="bench-serving-"))
os.environ["VISIONOPS_STATE_DIR"] = str(STATE)
sys.path.insert(0, str(ROOT))

import visionops  # noqa: E402, F401  (offline environment, state in STATE)

SAMPLE = ROOT / "data" / "sample" / "boards"
HOST = "127.0.0.1"
LEVEL_SECONDS = 60.0  # no concurrency level runs longer than this


def _ms(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 of durations in seconds, in milliseconds."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _timed(function, inputs: list, runs: int, warmup: int = 3) -> list[float]:
    for item in inputs[:warmup]:
        function(item)
    samples = []
    for i in range(runs):
        item = inputs[i % len(inputs)]
        start = time.perf_counter()
        function(item)
        samples.append(time.perf_counter() - start)
    return samples


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _stop(port: int) -> None:
    from visionops.env import state_dir

    pid_file = state_dir() / "bentoml" / f"serve-{port}.pid"
    if not pid_file.is_file():
        return
    pid = int(pid_file.read_text())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
                os.killpg(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                return
            time.sleep(0.2)


def _post(client, url: str, endpoint: str, name: str, data: bytes, check=True):
    field = "images" if endpoint == "detect_batch" else "image"
    response = client.post(
        f"{url}/{endpoint}", files=[(field, (name, data, "image/jpeg"))]
    )
    if check:
        response.raise_for_status()
    return response


def _throughput(
    url: str, endpoint: str, uploads: list[tuple[str, bytes]], level: int, total: int
) -> tuple[float, float, float, int, int]:
    """Answered requests per second, p50 and p95 latency (ms) of the answered ones,
    their number, and the number refused (BentoML's batcher answers 503 when it
    expects to miss `max_latency_ms`), at `level` concurrent clients.
    """
    import httpx

    deadline = time.monotonic() + LEVEL_SECONDS
    per_client = max(1, total // level)

    def client_loop(index: int) -> tuple[list[float], int]:
        samples, refused = [], 0
        with httpx.Client(timeout=60) as client:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    break
                name, data = uploads[(index + i) % len(uploads)]
                start = time.perf_counter()
                response = _post(client, url, endpoint, name, data, check=False)
                if response.status_code == 503:
                    refused += 1
                    continue
                response.raise_for_status()
                samples.append(time.perf_counter() - start)
        return samples, refused

    with ThreadPoolExecutor(level) as pool:
        for name, data in uploads[:2]:  # warm the workers up
            with httpx.Client(timeout=60) as client:
                _post(client, url, endpoint, name, data)
        start = time.perf_counter()
        results = list(pool.map(client_loop, range(level)))
        wall = time.perf_counter() - start
    samples = [s for r, _ in results for s in r]
    refused = sum(n for _, n in results)
    p50, p95 = _ms(samples) if samples else (float("nan"), float("nan"))
    return len(samples) / wall, p50, p95, len(samples), refused


def main() -> None:
    """Prints the latency table, the throughput table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--demo-imgsz", type=int, default=160)
    parser.add_argument("--raw-only", action="store_true", help="ORT rows only")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    import cv2
    import httpx
    import numpy as np
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    from visionops.inference import OnnxDetector, export_onnx, letterbox
    from visionops.quantize import quantize
    from visionops.serving.bento import build_bento, save_model, start_server

    port = _free_port()
    cores = os.cpu_count() or 1
    try:
        work = STATE / "model"
        work.mkdir()
        weights = work / "yolo11n.pt"
        YOLO("yolo11n.yaml").save(str(weights))
        onnx = export_onnx(weights, args.imgsz, out_dir=work)
        paths = sorted(SAMPLE.rglob("*.jpg"))[:16]
        uploads = [(p.name, p.read_bytes()) for p in paths]
        frames = [cv2.imread(str(p)) for p in paths]
        calibration = sorted((SAMPLE / "valid").rglob("*.jpg"))

        # FP32 and INT8 models at the served size and at the demo's size.
        sizes = list(dict.fromkeys([args.imgsz, args.demo_imgsz]))
        models = {(args.imgsz, "FP32"): onnx}
        for size in sizes:
            if size != args.imgsz:
                models[size, "FP32"] = export_onnx(
                    weights, size, out_dir=work / str(size)
                )
            models[size, "INT8"] = quantize(
                models[size, "FP32"], calibration, work / f"yolo11n-{size}.int8.onnx"
            )

        if not args.raw_only:
            tag = save_model(
                "bench-detector", onnx, weights, {"model_name": "bench-detector"}
            )
            bento = build_bento(tag, {"model_name": "bench-detector"})
            begin = time.perf_counter()
            url = start_server(str(bento.tag), port=port)
            ready_s = time.perf_counter() - begin

        # Raw session.run on blobs prepared exactly as OnnxDetector does.
        blobs: dict[int, list[np.ndarray]] = {}
        for size in sizes:
            blobs[size] = []
            for frame in frames:
                padded = letterbox(frame, size, auto=True)[0]
                blob = padded[None, :, :, ::-1].transpose(0, 3, 1, 2) / 255.0
                blobs[size].append(np.ascontiguousarray(blob, dtype=np.float32))
        thread_counts = sorted({1, cores})
        sessions = {
            (size, precision, t): OnnxDetector(path, threads=t)
            for (size, precision), path in models.items()
            for t in thread_counts
        }
        detector = OnnxDetector(onnx, threads=1)
        model = YOLO(str(weights))
        model.predict(frames[0], imgsz=args.imgsz, device="cpu", verbose=False)
        # Ultralytics sets torch to min(8, cores - 1) threads when it picks the CPU.
        torch_default = torch.get_num_threads()
        client = httpx.Client(timeout=60)
        server: dict[str, list[float]] = {
            "decode": [],
            "inference": [],
            "total": [],
            "round trip - server total": [],
        }

        def session_run(size: int, precision: str, threads: int):
            det = sessions[size, precision, threads]
            return lambda blob: det.session.run(None, {det.input_name: blob})

        def torch_predict(threads: int):
            def run(frame):
                torch.set_num_threads(threads)
                model.predict(frame, imgsz=args.imgsz, device="cpu", verbose=False)

            return run

        def http_detect(upload: tuple[str, bytes]) -> None:
            start = time.perf_counter()
            timing = _post(client, url, "detect", *upload).json()["timing_ms"]
            trip = time.perf_counter() - start
            for key in ("decode", "inference", "total"):
                server[key].append(timing[key] / 1000)
            # What the server's own timing does not see: HTTP, multipart parsing,
            # BentoML's dispatch to a worker, JSON.
            server["round trip - server total"].append(trip - timing["total"] / 1000)

        raw_label = "ONNX Runtime session.run, {} px {}, {} thread(s)".format
        paths_timed = {
            **{
                raw_label(size, precision, t): (
                    session_run(size, precision, t),
                    blobs[size],
                )
                for size in sizes
                for precision in ("FP32", "INT8")
                for t in thread_counts
            },
            "OnnxDetector.predict in process, 1 thread": (detector.predict, frames),
            f"PyTorch YOLO.predict, {torch_default} thread(s) (Ultralytics' default)": (
                torch_predict(torch_default),
                frames,
            ),
            f"PyTorch YOLO.predict, {cores} thread(s)": (torch_predict(cores), frames),
            "service detect over HTTP, round trip": (http_detect, uploads),
        }
        if torch_default == cores:
            paths_timed.pop(f"PyTorch YOLO.predict, {cores} thread(s)")
        if args.raw_only:
            paths_timed = {
                k: v for k, v in paths_timed.items() if k.startswith("ONNX Runtime")
            }
        samples: dict[str, list[float]] = {k: [] for k in paths_timed}
        per_round: dict[str, list[float]] = {k: [] for k in paths_timed}
        # Interleaved rounds: background load on this machine hits every path alike.
        for _ in range(args.rounds):
            for label, (function, inputs) in paths_timed.items():
                kept = {key: len(values) for key, values in server.items()}
                measured = _timed(function, inputs, args.runs, warmup=2)
                if function is http_detect:  # drop the warm-up requests' timings
                    for key, values in server.items():
                        del values[kept[key] : kept[key] + 2]
                samples[label] += measured
                per_round[label].append(statistics.median(measured))
        client.close()
        torch.set_num_threads(torch_default)
        rows = [(label, *_ms(values)) for label, values in samples.items()]
        for key, values in server.items():
            where = "" if key.startswith("round") else "server-side "
            if values:
                rows.append((f"  {where}{key}", *_ms(values)))
        int8_speedup = {
            (size, t): statistics.median(
                f / i
                for f, i in zip(
                    per_round[raw_label(size, "FP32", t)],
                    per_round[raw_label(size, "INT8", t)],
                    strict=True,
                )
            )
            for size in sizes
            for t in thread_counts
        }

        throughput = []
        for endpoint in ("detect", "detect_batch") if not args.raw_only else ():
            for level in levels:
                throughput.append(
                    (
                        endpoint,
                        level,
                        *_throughput(
                            url, endpoint, uploads, level, total=max(32, 8 * level)
                        ),
                    )
                )
    finally:
        _stop(port)
        shutil.rmtree(STATE, ignore_errors=True)

    print(
        f"\nyolo11n at {args.imgsz} px on {cores} CPU cores, 640x640 JPEGs, "
        f"{args.rounds} interleaved rounds x {args.runs} runs per path "
        f"(ORT {ort.__version__}, torch {torch.__version__})"
    )
    print("\n| path | p50 ms | p95 ms |\n|---|---:|---:|")
    for label, p50, p95 in rows:
        print(f"| {label} | {p50:.1f} | {p95:.1f} |")
    print("\nINT8 speed-up over FP32 (ratio of p50s, median over the rounds):")
    for (size, t), ratio in int8_speedup.items():
        print(f"  {size} px, {t} thread(s): {ratio:.2f}x")
    if args.raw_only:
        return
    raw, service = (
        per_round[raw_label(args.imgsz, "FP32", 1)],
        per_round["service detect over HTTP, round trip"],
    )
    torch_rounds = per_round[
        f"PyTorch YOLO.predict, {torch_default} thread(s) (Ultralytics' default)"
    ]
    service_ratio = statistics.median(s / r for s, r in zip(service, raw, strict=True))
    torch_ratio = statistics.median(
        t / s for t, s in zip(torch_rounds, service, strict=True)
    )
    torch_raw_ratio = statistics.median(
        t / r for t, r in zip(torch_rounds, raw, strict=True)
    )
    print(f"\n`bentoml serve` until /readyz answers: {ready_s:.1f} s")
    print("\n| endpoint | concurrency | req/s | p50 ms | p95 ms | answered | 503 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for endpoint, level, rps, p50, p95, n, refused in throughput:
        print(
            f"| {endpoint} | {level} | {rps:.1f} | {p50:.0f} | {p95:.0f} | {n} "
            f"| {refused} |"
        )
    print("\nratios of p50s, median over the rounds:")
    print(
        f"  service / raw ORT session (1 thread): {service_ratio:.2f}x "
        "(target <= 1.15x)"
    )
    print(
        f"  PyTorch ({torch_default} thread(s)) / service: {torch_ratio:.2f}x "
        f"(target >= 2x); PyTorch / raw ORT: {torch_raw_ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
