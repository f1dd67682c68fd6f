"""Per-request overhead and throughput of the served `/detect`, by workers x threads.

Usage: python bench/serving_overhead.py [--imgsz 160,640] [--configs 2x1,1x2]
    [--rounds N] [--runs N] [--levels 1,4,16] [--seconds S]

In a throwaway state folder, for each image size: a random-init yolo11n (latency
does not depend on the weights) exported to ONNX, stored with `save_model`, built
with `build_bento`; then for each workers x threads configuration the Bento is
served by `bentoml serve` on a free loopback port (`BENTOML_CONFIG_OPTIONS` sets
the workers, `VISIONOPS_SERVE_THREADS` the ONNX Runtime threads per worker).
Images are the bundled sample's 640x640 JPEGs. Measured:

- overhead at one client: in interleaved rounds (background load on a shared
  machine hits both alike), the served `/detect` round trip and, in this process,
  `decode_image` + `OnnxDetector.predict` of the same upload with the same thread
  count; overhead = served p50 - in-process p50, per round, median over rounds;
  with the server's own `timing_ms` stages;
- throughput: answered images/s at each concurrency level for `/detect`, and
  `/detect_batch` (one image per request, merged by BentoML's adaptive batching);
- raw throughput on the same cores: `workers` processes of `threads` threads
  each running decode + predict in a loop, no HTTP, the best configuration.

Every loop is bounded in time; servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
os.environ["VISIONOPS_STATE_DIR"] = str(STATE)
sys.path.insert(0, str(ROOT))

import visionops  # noqa: E402, F401  (offline environment, state in STATE)

SAMPLE = ROOT / "data" / "sample" / "boards"
HOST = "127.0.0.1"
SERVICE_NAME = "visionops-detector"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _serve(bento: str, workers: int, threads: int) -> tuple[subprocess.Popen, str]:
    from visionops.serving.bento import server_command

    port = _free_port()
    env = {
        **os.environ,
        "BENTOML_CONFIG_OPTIONS": f'services."{SERVICE_NAME}".workers={workers}',
        "VISIONOPS_SERVE_THREADS": str(threads),
    }
    log = (STATE / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(
        server_command(bento, port),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = Path(log.name).read_text()[-3000:]
            raise RuntimeError(f"bentoml serve exited:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.5)
    os.killpg(process.pid, signal.SIGTERM)
    raise RuntimeError("bentoml serve was not ready in 180 s")


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)  # its own session: workers included
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def _post(client, url: str, endpoint: str, upload: tuple[str, bytes]):
    field = "images" if endpoint == "detect_batch" else "image"
    response = client.post(
        f"{url}/{endpoint}", files=[(field, (upload[0], upload[1], "image/jpeg"))]
    )
    response.raise_for_status()
    return response


def _in_process(onnx: Path, threads: int):
    from visionops.inference import OnnxDetector
    from visionops.serving.limits import decode_image

    detector = OnnxDetector(onnx, threads=threads)
    return lambda upload: detector.predict(decode_image(upload[1]))


def _raw_worker(args: tuple[str, int, list[bytes], float]) -> int:
    """One process: decode + predict in `threads` threads until the deadline."""
    onnx, threads, datas, seconds = args
    from visionops.inference import OnnxDetector
    from visionops.serving.limits import decode_image

    # One session with `threads` intra-op threads, as in one served worker.
    detector = OnnxDetector(onnx, threads=threads)
    detector.predict(decode_image(datas[0]))
    done, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        detector.predict(decode_image(datas[done % len(datas)]))
        done += 1
    return done


def _raw_throughput(onnx: Path, workers: int, threads: int, datas, seconds) -> float:
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        start = time.perf_counter()
        done = pool.map(_raw_worker, [(str(onnx), threads, datas, seconds)] * workers)
        wall = time.perf_counter() - start
    # Start-up of the pool is outside the loops' deadline: count the loop time.
    return sum(done) / min(wall, seconds + 0.5)


def _throughput(url: str, endpoint: str, uploads, level: int, seconds: float):
    """Answered images/s and p50 latency (ms) at `level` concurrent clients."""
    import httpx

    deadline = time.monotonic() + seconds

    def client_loop(index: int) -> list[float]:
        samples = []
        with httpx.Client(timeout=60) as client:
            i = index
            while time.monotonic() < deadline:
                start = time.perf_counter()
                _post(client, url, endpoint, uploads[i % len(uploads)])
                samples.append(time.perf_counter() - start)
                i += level
        return samples

    start = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        results = list(pool.map(client_loop, range(level)))
    wall = time.perf_counter() - start
    samples = [s for r in results for s in r]
    return len(samples) / wall, statistics.median(samples) * 1000


def _overhead(url: str, onnx: Path, threads: int, uploads, rounds: int, runs: int):
    """Per round: served p50 - in-process (decode + predict) p50, and the stages."""
    import httpx

    local = _in_process(onnx, threads)
    stages: dict[str, list[float]] = {}
    served_p50, local_p50, diffs = [], [], []
    with httpx.Client(timeout=60) as client:
        for upload in uploads[:3]:
            _post(client, url, "detect", upload)
            local(upload)
        for _ in range(rounds):
            served, mine = [], []
            for i in range(runs):
                upload = uploads[i % len(uploads)]
                start = time.perf_counter()
                timing = _post(client, url, "detect", upload).json()["timing_ms"]
                served.append(time.perf_counter() - start)
                for key, value in timing.items():
                    stages.setdefault(key, []).append(value)
                start = time.perf_counter()
                local(upload)
                mine.append(time.perf_counter() - start)
            for _ in range(runs // 2):  # the floor: an endpoint with no image
                start = time.perf_counter()
                client.post(f"{url}/info", json={}).raise_for_status()
                stages.setdefault("info round trip", []).append(
                    (time.perf_counter() - start) * 1000
                )
            served_p50.append(statistics.median(served) * 1000)
            local_p50.append(statistics.median(mine) * 1000)
            diffs.append(served_p50[-1] - local_p50[-1])
    return (
        statistics.median(served_p50),
        statistics.median(local_p50),
        statistics.median(diffs),
        {k: statistics.median(v) for k, v in stages.items()},
    )


def main() -> None:
    """Prints one table per image size: overhead, stages, throughput, raw."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", default="160,640")
    parser.add_argument("--configs", default="2x1,1x2", help="workers x threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level")
    args = parser.parse_args()
    sizes = [int(x) for x in args.imgsz.split(",")]
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    levels = [int(x) for x in args.levels.split(",")]

    from ultralytics import YOLO

    from visionops.inference import export_onnx
    from visionops.serving.bento import build_bento, save_model

    paths = sorted(SAMPLE.rglob("*.jpg"))[:16]
    uploads = [(p.name, p.read_bytes()) for p in paths]
    datas = [data for _, data in uploads]
    cores = os.cpu_count() or 1
    print(
        f"{datetime.date.today()}, {cores} CPU cores, random-init yolo11n, "
        f"{len(uploads)} 640x640 JPEGs, {args.rounds} rounds x {args.runs} requests"
    )
    try:
        for size in sizes:
            work = STATE / f"model-{size}"
            work.mkdir()
            weights = work / "yolo11n.pt"
            YOLO("yolo11n.yaml").save(str(weights))
            onnx = export_onnx(weights, size, out_dir=work)
            tag = save_model("bench-detector", onnx, weights, {"size": size})
            bento = str(build_bento(tag, {"model_name": "bench-detector"}).tag)
            raw = {c: _raw_throughput(onnx, *c, datas, args.seconds) for c in configs}
            best_raw = max(raw.values())
            print(f"\n## {size} px\n")
            print(
                "| workers x threads | served p50 ms | decode+predict p50 ms "
                "| overhead ms | raw img/s | "
                + " | ".join(f"detect img/s @{n}" for n in levels)
                + " | detect_batch img/s @16 | served/raw @16 |"
            )
            print("|---" * (7 + len(levels)) + "|")
            notes = []
            for workers, threads in configs:
                process, url = _serve(bento, workers, threads)
                try:
                    served, local, overhead, stages = _overhead(
                        url, onnx, threads, uploads, args.rounds, args.runs
                    )
                    rates = [
                        _throughput(url, "detect", uploads, n, args.seconds)[0]
                        for n in levels
                    ]
                    batch = _throughput(url, "detect_batch", uploads, 16, args.seconds)
                finally:
                    _stop(process)
                top = rates[levels.index(16)] if 16 in levels else rates[-1]
                print(
                    f"| {workers} x {threads} | {served:.1f} | {local:.1f} "
                    f"| {overhead:.1f} | {raw[(workers, threads)]:.1f} | "
                    + " | ".join(f"{r:.1f}" for r in rates)
                    + f" | {batch[0]:.1f} | {top / best_raw:.2f} |"
                )
                notes.append(
                    f"{workers} x {threads}, server `timing_ms` p50 at one client: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                )
            print("\n" + "\n".join(notes))
            print(f"\nbest raw decode+predict on {cores} cores: {best_raw:.1f} img/s")
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
