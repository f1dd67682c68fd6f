"""The served `/detect` by workers x concurrent requests per worker: the choice.

Usage: python bench/serving_workers.py [--imgsz 160,640] [--configs 2x1,2x2,1x2]
    [--levels 1,4,16] [--seconds S]

In a throwaway state folder, for each image size: a random-init yolo11n (latency
does not depend on the weights) exported to ONNX, stored with `save_model`,
built with `build_bento`, and served by `bentoml serve` once per configuration
`WxR`: W worker processes (`services."visionops".workers`), each running up to R
requests at once (`services."visionops".threads`, BentoML's thread pool for sync
endpoints; every request's ONNX Runtime session.run uses one thread). Images are
the bundled sample's 640x640 JPEGs; the load is `bench/harness.py`'s (keep-alive
connections on one asyncio loop).

Printed per size and configuration: answered images/s and p50 latency at each
concurrency level, how the connections spread over the worker processes at the
highest level (BentoML's workers accept from one shared socket: a busy worker's
event loop keeps accepting, so keep-alive clients can all land on one worker),
and raw decode + predict with no HTTP in one process per core (the ceiling).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import importlib
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import harness  # noqa: E402

SAMPLE = ROOT / "data" / "sample" / "boards"


def _spread(server: harness.Server) -> list[int]:
    """Established connections per worker process of `server`, most first."""
    import psutil

    counts: collections.Counter = collections.Counter()
    for child in psutil.Process(server.process.pid).children(recursive=True):
        for connection in child.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_ESTABLISHED
                and connection.laddr.port == server.port
            ):
                counts[child.pid] += 1
    return sorted(counts.values(), reverse=True)


def _measure(server: harness.Server, requests: list[bytes], levels, seconds):
    """Images/s and p50 per level, and the connections' spread at the last."""
    spread: list[int] = []

    def probe() -> None:  # while the highest level runs
        time.sleep(min(2.0, seconds / 2))
        spread.extend(_spread(server))

    results = []
    for level in levels:
        watcher = threading.Thread(target=probe) if level == levels[-1] else None
        if watcher:
            watcher.start()
        results.append(harness.load(server.port, requests, level, seconds))
        if watcher:
            watcher.join()
    return results, spread


def main() -> None:
    """Prints one table per image size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", default="160,640")
    parser.add_argument("--configs", default="2x1,2x2,1x2", help="workers x requests")
    parser.add_argument("--levels", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level")
    args = parser.parse_args()
    sizes = [int(x) for x in args.imgsz.split(",")]
    configs = [tuple(int(v) for v in c.split("x")) for c in args.configs.split(",")]
    levels = [int(x) for x in args.levels.split(",")]
    state = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    os.environ["VISIONOPS_STATE_DIR"] = str(state)

    import visionops  # noqa: F401  (offline environment, state in `state`)

    YOLO = importlib.import_module("ultralytics").YOLO  # after visionops' settings
    from visionops.engine.onnx import export_onnx
    from visionops.serving.bento import build_bento, save_model

    uploads = [(p.name, p.read_bytes()) for p in sorted(SAMPLE.rglob("*.jpg"))[:16]]
    print(
        f"{datetime.date.today()}, {os.cpu_count()} CPU cores, random-init yolo11n, "
        f"{len(uploads)} 640x640 JPEGs, {args.seconds:.0f} s per level"
    )
    try:
        for size in sizes:
            work = state / f"model-{size}"
            work.mkdir()
            weights = work / "yolo11n.pt"
            YOLO("yolo11n.yaml").save(str(weights))
            onnx = export_onnx(weights, size, out_dir=work)
            lineage = {"task": "detect", "model_name": "bench-detector"}
            tag = save_model("bench-detector", onnx, weights, lineage)
            bento = str(build_bento(tag, lineage).tag)
            datas = [data for _, data in uploads]
            raw = harness.raw_throughput("detect", onnx, datas, args.seconds)
            print(f"\n## {size} px (raw decode + predict: {raw:.1f} img/s)\n")
            print(
                "| workers x requests | "
                + " | ".join(f"img/s @{n} (p50 ms)" for n in levels)
                + f" | connections per worker @{levels[-1]} | served / raw "
                f"@{levels[-1]} |"
            )
            print("|---" * (3 + len(levels)) + "|")
            for workers, requests_per_worker in configs:
                server = harness.serve(
                    bento, work, workers=workers, requests=requests_per_worker
                )
                try:
                    requests = [
                        harness.upload_request(server.port, "/detect", "image", [u])
                        for u in uploads
                    ]
                    results, spread = _measure(server, requests, levels, args.seconds)
                finally:
                    server.stop()
                cells = [
                    f"{r.per_second:.1f} ({harness.p50_p95(r.latencies)[0]:.0f})"
                    for r in results
                ]
                print(
                    f"| {workers} x {requests_per_worker} | "
                    + " | ".join(cells)
                    + f" | {' + '.join(map(str, spread))} | "
                    f"{results[-1].per_second / raw:.2f} |"
                )
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
